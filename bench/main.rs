//! regbench: the registry load-test harness.
//!
//! `regbench <scenario> <target-url> [options]` drives a registry (or a proxy
//! in front of one) with the real protocol: pings, HEAD checks, pulls with
//! digest verification, blob upload sessions, and a CI-fleet mix. It is
//! thread-per-core on monoio like regproxy, so it is not the bottleneck, and
//! it parses HTTP with regproxy's own strict framing code.
//!
//! `regbench origin --listen ADDR` is a fast in-memory fake registry to put
//! behind a proxy, so the proxy's own cost can be measured.
//!
//! `regbench report ACCESS_LOG` summarises a regproxy JSON access log in
//! the same tables (`traffic`).
//!
//! Exit status: 0 when every request succeeded, 3 when the run completed
//! with failed requests, 1 when it could not run at all, 2 for usage errors.
#![deny(unsafe_code)]

mod bearer;
mod client;
mod content;
mod jwt_verify;
mod origin;
mod registry;
mod report;
mod runner;
mod scenario;
mod stats;
mod tls;
mod traffic;
mod units;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use base64::Engine;
use clap::{Args, Parser, Subcommand};

use crate::client::{Settings, Target};
use crate::runner::RunConfig;
use crate::scenario::{CiMix, Plan, Scenario};

/// Exit status of a run that completed with failed requests.
const EXIT_ERRORS: u8 = 3;

/// Registry load tester: ping, head, pull, push and CI-fleet scenarios over
/// HTTP/1.1 keep-alive, plain or TLS, with basic auth; and a fake origin.
#[derive(Parser)]
#[command(name = "regbench", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// GET /v2/ as fast as the target answers.
    Ping(LoadArgs),
    /// HEAD on an image's manifest and blobs in turn ("does this layer exist?").
    Head(LoadArgs),
    /// GET the manifest, then each blob; digests verified unless --no-verify.
    Pull(LoadArgs),
    /// The upload flow: POST, chunked PATCH (or --monolithic PUT), PUT
    /// ?digest=, then the manifest PUT.
    Push(LoadArgs),
    /// A CI fleet: each job pulls the base image, pushes a small image of
    /// fresh layers, then HEAD-checks layers. Tune with the --ci-* options.
    Ci(LoadArgs),
    /// GET /token for one scope (repository:PREFIX/token:pull,push) with
    /// the Basic credentials: token issuance. The realm comes from the
    /// target's Bearer challenge.
    Token(LoadArgs),
    /// The cost of verifying a token never seen before (RS256, ES256,
    /// EdDSA), with regproxy's token code called directly, in µs.
    JwtVerify(JwtVerifyArgs),
    /// Serve a fast in-memory fake registry until killed.
    Origin(OriginArgs),
    /// Summarise a regproxy JSON access log: actions, bytes, latency,
    /// slowest repositories, error causes.
    Report(ReportArgs),
}

#[derive(Args, Debug)]
struct JwtVerifyArgs {
    /// Distinct tokens per case, each verified once.
    #[arg(short = 'n', long, default_value_t = 1000)]
    count: usize,
    /// Turns the cases take, each verifying its share of its tokens.
    #[arg(long, default_value_t = 10)]
    rounds: usize,
    /// Also write the report as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct ReportArgs {
    /// The access log (`[log] format = "json"`).
    log: PathBuf,
}

#[derive(Args, Debug)]
struct LoadArgs {
    /// The registry or proxy: http://host:port or https://host:port.
    target: String,

    /// User for HTTP basic auth.
    #[arg(short, long)]
    user: Option<String>,
    /// Password for HTTP basic auth.
    #[arg(short, long)]
    password: Option<String>,
    /// A file whose first line is `user:password`.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["user", "password"])]
    credentials: Option<PathBuf>,
    /// Trust only the CA certificates in this PEM file.
    #[arg(long, value_name = "FILE")]
    cacert: Option<PathBuf>,
    /// Accept any server certificate.
    #[arg(short = 'k', long, conflicts_with = "cacert")]
    insecure: bool,
    /// Bearer tokens as docker uses them: learn the realm from the
    /// target's challenge to an unauthenticated GET /v2/, fetch a token
    /// per repository (scope pull,push) with the Basic credentials, keep
    /// it until its expires_in is near, and send it on every request.
    #[arg(long)]
    token_auth: bool,

    /// Clients running operations concurrently (over all threads).
    #[arg(short, long, default_value_t = 16)]
    concurrency: usize,
    /// Keep-alive connections (over all threads); default: one per client.
    #[arg(long)]
    connections: Option<usize>,
    /// Client threads, each with its own runtime; default: one per core.
    #[arg(long)]
    threads: Option<usize>,

    /// Stop after this many operations (a push or pull of a whole image is
    /// one). Default when neither this nor --duration is given: 1000 for
    /// ping and head, 20 for the rest.
    #[arg(short = 'n', long)]
    count: Option<u64>,
    /// Stop starting operations after this long (e.g. 30s, 2m).
    #[arg(short, long, value_parser = units::parse_duration)]
    duration: Option<Duration>,
    /// With --duration: operations still running this long after it are cut.
    #[arg(long, default_value = "5s", value_parser = units::parse_duration)]
    grace: Duration,
    /// Longest wait for any single read, write or connect.
    #[arg(long, default_value = "60s", value_parser = units::parse_duration)]
    timeout: Duration,

    /// Repository names start with this.
    #[arg(long, default_value = "regbench")]
    repo_prefix: String,
    /// Size of each layer pushed (push) or of the image prepared (head,
    /// pull, ci): 4KiB, 16MiB, 1GiB, ...
    #[arg(short, long, default_value = "1MiB", value_parser = units::parse_size)]
    blob_size: u64,
    /// Layers per image.
    #[arg(long, default_value_t = 1)]
    layers: u32,
    /// Upload each blob with one PUT ?digest= and a Content-Length body
    /// (the digest is computed first, in a separate pass).
    #[arg(long)]
    monolithic: bool,
    /// Do not hash pulled blobs (sizes are still checked).
    #[arg(long)]
    no_verify: bool,
    /// Work on this existing image (name:tag or name@digest) instead of
    /// pushing one first (head, pull, ci).
    #[arg(long)]
    image: Option<String>,

    /// ci: pulls of the base image per job.
    #[arg(long, default_value_t = 1)]
    ci_pulls: u32,
    /// ci: fresh layers pushed per job.
    #[arg(long, default_value_t = 3)]
    ci_layers: u32,
    /// ci: size of each pushed layer.
    #[arg(long, default_value = "256KiB", value_parser = units::parse_size)]
    ci_layer_size: u64,
    /// ci: HEAD checks per job, cycling over the pushed then the base
    /// blobs; default: each once.
    #[arg(long)]
    ci_heads: Option<u32>,

    /// Also write the report as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct OriginArgs {
    /// Address to listen on (loopback by default; port 0 picks one).
    #[arg(short, long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Server threads; default: one per core.
    #[arg(long)]
    threads: Option<usize>,
    /// Layer size of images whose tag is not `<layers>x<size>`.
    #[arg(long, default_value = "1MiB", value_parser = units::parse_size)]
    blob_size: u64,
    /// Layer count of images whose tag is not `<layers>x<size>`.
    #[arg(long, default_value_t = 1)]
    layers: u32,
    /// Longest wait for a client's next bytes.
    #[arg(long, default_value = "60s", value_parser = units::parse_duration)]
    timeout: Duration,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Ping(a) => load(Scenario::Ping, a),
        Command::Head(a) => load(Scenario::Head, a),
        Command::Pull(a) => load(Scenario::Pull, a),
        Command::Push(a) => load(Scenario::Push, a),
        Command::Ci(a) => load(Scenario::Ci, a),
        Command::Token(a) => load(Scenario::Token, a),
        Command::JwtVerify(a) => {
            jwt_verify::run(a.count, a.rounds, a.json.as_deref()).map(|()| ExitCode::SUCCESS)
        }
        Command::Origin(a) => origin(a).map(|()| ExitCode::SUCCESS),
        Command::Report(a) => traffic::run(&a.log).map(|()| ExitCode::SUCCESS),
    };
    result.unwrap_or_else(|e| {
        eprintln!("regbench: {e:#}");
        ExitCode::FAILURE
    })
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn origin(a: OriginArgs) -> anyhow::Result<()> {
    if !(1..=origin::MAX_LAYERS).contains(&a.layers) {
        bail!("--layers must be 1..={}", origin::MAX_LAYERS);
    }
    origin::serve(&origin::OriginConfig {
        listen: a.listen,
        threads: a.threads.unwrap_or_else(cores),
        default: origin::Shape {
            layers: a.layers,
            size: a.blob_size,
        },
        timeout: a.timeout,
    })
}

/// `Basic base64(user:password)` from the flags or the credentials file.
fn authorization(a: &LoadArgs) -> anyhow::Result<Option<String>> {
    let pair = match (&a.credentials, &a.user, &a.password) {
        (Some(file), _, _) => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read credentials file {}", file.display()))?;
            let line = text
                .lines()
                .next()
                .unwrap_or_default()
                .trim_end_matches('\r');
            if !line.contains(':') {
                bail!("{}: the first line must be user:password", file.display());
            }
            line.to_owned()
        }
        (None, Some(u), Some(p)) => format!("{u}:{p}"),
        (None, None, None) => return Ok(None),
        (None, Some(_), None) => bail!("--user needs --password (or use --credentials FILE)"),
        (None, None, Some(_)) => bail!("--password needs --user"),
    };
    let encoded = base64::engine::general_purpose::STANDARD.encode(pair.as_bytes());
    Ok(Some(format!("Basic {encoded}")))
}

fn load(scenario: Scenario, a: LoadArgs) -> anyhow::Result<ExitCode> {
    let target = Arc::new(Target::parse(&a.target)?);
    let tls = if target.tls {
        let trust = match (&a.cacert, a.insecure) {
            (Some(path), _) => tls::Trust::CaFile(path.clone()),
            (None, true) => tls::Trust::Insecure,
            (None, false) => tls::Trust::System,
        };
        Some(tls::client_config(&trust)?)
    } else {
        None
    };
    if a.concurrency == 0 || a.connections == Some(0) || a.threads == Some(0) {
        bail!("--concurrency, --connections and --threads must be at least 1");
    }
    if a.layers == 0 && scenario != Scenario::Ping {
        bail!("--layers must be at least 1");
    }
    if !registry::valid_repo(&a.repo_prefix) {
        bail!(
            "--repo-prefix {:?} is not a valid repository name (lowercase letters, digits, . _ - and /)",
            a.repo_prefix
        );
    }
    let image = a
        .image
        .as_deref()
        .map(registry::parse_image_ref)
        .transpose()
        .map_err(|e| anyhow!(e))?;
    let count = match (a.count, a.duration) {
        (None, None) => Some(scenario.default_count()),
        (c, _) => c,
    };
    let mut run_id = [0u8; 8];
    getrandom::fill(&mut run_id).map_err(|e| anyhow!("no randomness for the run id: {e}"))?;
    let plan = Plan {
        scenario,
        repo_prefix: a.repo_prefix.clone(),
        blob_size: a.blob_size,
        layers: a.layers,
        image,
        ci: CiMix {
            pulls: a.ci_pulls,
            layers: a.ci_layers,
            layer_size: a.ci_layer_size,
            heads: a.ci_heads,
        },
        run_id: u64::from_le_bytes(run_id),
    };
    let cfg = RunConfig {
        plan: Arc::new(plan),
        target,
        tls,
        settings: Settings {
            authorization: authorization(&a)?,
            bearer: None,
            timeout: a.timeout,
        },
        token_auth: a.token_auth || scenario == Scenario::Token,
        verify: !a.no_verify,
        monolithic: a.monolithic,
        threads: a.threads.unwrap_or_else(cores),
        concurrency: a.concurrency,
        connections: a.connections.unwrap_or(a.concurrency),
        count,
        duration: a.duration,
        grace: a.grace,
        progress: runner::stderr_is_tty(),
    };
    let outcome = runner::run(&cfg)?;
    let report = report::Report::new(&cfg, &outcome);
    print!("{}", report.table());
    if let Some(path) = &a.json {
        std::fs::write(path, report.to_json() + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(if report.error_count() > 0 {
        ExitCode::from(EXIT_ERRORS)
    } else {
        ExitCode::SUCCESS
    })
}
