//! The regproxy binary's command line: serve (`regproxy::server`), check a
//! configuration or the host it runs on, import an nginx configuration, or
//! show and empty the edge cache.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use regproxy::tools::tuning::{self, HostFacts, Needs, Verdict};

/// Cache-line-aligned bulk blocks: see `sys::malloc::BulkAligned` for the
/// copy slowdown it avoids.
#[global_allocator]
static ALLOC: regproxy::sys::malloc::BulkAligned = regproxy::sys::malloc::BulkAligned;

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
    /// Show or empty the edge blob cache of the configuration's [cache]
    /// table. Safe beside a running regproxy.
    Cache {
        #[command(subcommand)]
        action: CacheAction,
    },
}

#[derive(Subcommand)]
enum CacheAction {
    /// Print entries, bytes, max_size, and files under tmp/ (fills in
    /// progress or left by a killed process).
    Stats,
    /// Remove one entry, or every entry with --all; exit 2 on a malformed
    /// digest.
    #[command(group(clap::ArgGroup::new("what").required(true).args(["digest", "all"])))]
    Purge {
        /// sha256:<64 hex> or sha512:<128 hex>.
        digest: Option<String>,
        /// Remove every entry (fills in progress stay).
        #[arg(long)]
        all: bool,
    },
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
    #[arg(long = "map-path", value_name = "FROM=TO", value_parser = regproxy::tools::nginx::parse_pair)]
    map_path: Vec<(String, String)>,
    /// Replace the upstream host name HOST by ADDR (a compose link name
    /// such as "registry"). Repeatable.
    #[arg(long, value_name = "HOST=ADDR", value_parser = regproxy::tools::nginx::parse_pair)]
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
        Some(Command::Cache { action }) => return cache(&cli.config, action),
        None => regproxy::server::run(&cli.config),
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
    let loaded = regproxy::live::load(path)?;
    regproxy::tls::registry_client(&loaded.config.upstream)?;
    let tokens = match &loaded.auth.tokens {
        Some(t) => format!(", bearer tokens signed {}", t.issuer.key().alg().as_str()),
        None => String::new(),
    };
    println!(
        "{}: ok ({} users, tls {}, {} upstream servers{tokens}, {} OIDC issuers)",
        path.display(),
        loaded.auth.users.len(),
        if loaded.tls.is_some() { "on" } else { "off" },
        loaded.config.upstream.servers.len(),
        loaded.config.auth.oidc.len(),
    );
    Ok(())
}

/// `regproxy cache`: exit 2 on a malformed digest (before the config is
/// read), 1 on any other problem, such as a config without `[cache]`.
fn cache(path: &Path, action: CacheAction) -> ExitCode {
    use regproxy::tools::cache::{self, Purge};
    let purge = match action {
        CacheAction::Stats => None,
        CacheAction::Purge { all: true, .. } => Some(Purge::All),
        CacheAction::Purge { digest, .. } => {
            match cache::parse_digest(digest.as_deref().unwrap_or_default()) {
                Ok(d) => Some(Purge::One(d)),
                Err(e) => {
                    eprintln!("regproxy: {e}");
                    return ExitCode::from(2);
                }
            }
        }
    };
    let result = regproxy::config::load(path).and_then(|config| match &purge {
        None => cache::stats(&config),
        Some(what) => cache::purge(&config, what),
    });
    match result {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("regproxy: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn import_nginx(args: ImportArgs) -> anyhow::Result<()> {
    let map_paths = args
        .map_path
        .into_iter()
        .map(|(from, to)| (PathBuf::from(from), PathBuf::from(to)))
        .collect();
    let conversion = regproxy::tools::nginx::import(&args.nginx_conf, map_paths, args.resolve)?;
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

/// Prints the host table for this configuration. Only the config file is
/// read (not the htpasswd or TLS files): the host may be checked before
/// they are in place.
fn check_host(path: &Path, root: &Path, format: Format) -> ExitCode {
    let config = match regproxy::config::load(path) {
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
