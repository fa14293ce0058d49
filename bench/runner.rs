//! Running a scenario: thread-per-core, as regproxy itself runs.
//!
//! Each thread has its own monoio runtime (io_uring, epoll where it is
//! unavailable), its own connections and its own statistics; the clients of
//! a thread are tasks on it. Threads share only the [`Budget`] (one atomic
//! ticket counter and a deadline) and the progress counters.
//!
//! Every run is bounded: no operation starts after `--count` tickets are
//! taken or after `--duration`, and with a duration, operations still running
//! `grace` after it are cut and counted as cancelled.

use std::io::{IsTerminal, Write};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};

use crate::client::{Connector, Failure, Pool, Settings, Target};
use crate::registry::{Ctx, Image};
use crate::scenario::{Plan, SetupReport, Who};
use crate::stats::{Live, Stats};

/// Submission queue entries per io_uring instance, as regproxy's workers.
const URING_ENTRIES: u32 = 1024;
/// How often the main thread looks at the workers and the progress counters.
const TICK: Duration = Duration::from_millis(50);
/// How often the live line is redrawn.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// Pause after a failed connection attempt, so a dead target does not turn
/// a duration run into a busy loop.
const CONNECT_BACKOFF: Duration = Duration::from_millis(20);

/// How a run is shaped, from the command line.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub plan: Arc<Plan>,
    pub target: Arc<Target>,
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub settings: Settings,
    pub verify: bool,
    pub monolithic: bool,
    /// Learn the token realm from the target's challenge first, then send
    /// Bearer tokens (`--token-auth`, and the `token` scenario).
    pub token_auth: bool,
    pub threads: usize,
    pub concurrency: usize,
    pub connections: usize,
    pub count: Option<u64>,
    pub duration: Option<Duration>,
    /// How long operations may run past `duration` before being cut.
    pub grace: Duration,
    /// Draw the live progress line (stderr is a terminal).
    pub progress: bool,
}

/// What a run produced.
#[derive(Debug)]
pub struct Outcome {
    pub stats: Stats,
    /// From the start to the last thread's end.
    pub elapsed: Duration,
    pub setup: SetupReport,
    pub threads: usize,
}

/// Hands out operation tickets until the count or the deadline is reached.
#[derive(Debug)]
pub struct Budget {
    count: Option<u64>,
    deadline: Option<Instant>,
    next: AtomicU64,
}

impl Budget {
    pub fn new(count: Option<u64>, deadline: Option<Instant>) -> Self {
        Self {
            count,
            deadline,
            next: AtomicU64::new(0),
        }
    }

    /// The next operation's ticket, or `None` when the run is over.
    pub fn take(&self) -> Option<u64> {
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return None;
        }
        let ticket = self.next.fetch_add(1, Ordering::Relaxed);
        match self.count {
            Some(c) if ticket >= c => None,
            _ => Some(ticket),
        }
    }
}

/// `total` spread over `parts`, the first ones taking the remainder.
fn share(total: usize, parts: usize, index: usize) -> usize {
    total / parts + usize::from(index < total % parts)
}

type Runtime = monoio::FusionRuntime<
    monoio::time::TimeDriver<monoio::IoUringDriver>,
    monoio::time::TimeDriver<monoio::LegacyDriver>,
>;

fn runtime() -> std::io::Result<Runtime> {
    monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .with_entries(URING_ENTRIES)
        .build()
}

fn pool(cfg: &RunConfig, connections: usize) -> Rc<Pool> {
    let connector = Connector::new(cfg.target.clone(), cfg.tls.clone(), cfg.settings.timeout);
    Pool::new(connector, connections)
}

/// One client's context. Clients of a thread share its connections; each
/// has its own statistics (merged at the end) and its own tokens.
fn context(cfg: &RunConfig, settings: &Settings, pool: Rc<Pool>, live: Arc<Live>) -> Rc<Ctx> {
    Rc::new(Ctx {
        pool,
        stats: Default::default(),
        live,
        settings: settings.clone(),
        verify: cfg.verify,
        monolithic: cfg.monolithic,
        tokens: Default::default(),
    })
}

/// The settings of the measured phase (with the token realm, when asked
/// for) and the image the scenario works on: neither is measured.
async fn prepare(cfg: &RunConfig) -> Result<(Settings, Option<Image>), Failure> {
    let pool = pool(cfg, 1);
    let mut settings = cfg.settings.clone();
    if cfg.token_auth {
        let ctx = context(cfg, &settings, pool.clone(), Arc::default());
        settings.bearer = Some(Arc::new(ctx.discover_realm().await?));
    }
    let ctx = context(cfg, &settings, pool, Arc::default());
    let image = cfg.plan.setup(&ctx).await?;
    Ok((settings, image))
}

/// Runs the setup, then the measured phase; blocks until it is over.
pub fn run(cfg: &RunConfig) -> anyhow::Result<Outcome> {
    let setup_started = Instant::now();
    let (settings, image) = runtime()
        .context("cannot start a monoio runtime")?
        .block_on(prepare(cfg))
        .map_err(|f: Failure| anyhow!("setup failed: {f}"))?;
    let setup = SetupReport::new(image.as_ref(), setup_started);
    let image = Arc::new(image);

    let threads = cfg.threads.min(cfg.concurrency).min(cfg.connections).max(1);
    let start = Instant::now();
    let deadline = cfg.duration.map(|d| start + d);
    let budget = Arc::new(Budget::new(cfg.count, deadline));
    let hard_deadline = deadline.map(|d| d + cfg.grace);
    let barrier = Arc::new(Barrier::new(threads + 1));
    let lives: Vec<Arc<Live>> = (0..threads).map(|_| Arc::default()).collect();
    let mut handles = Vec::with_capacity(threads);
    for (t, live) in lives.iter().enumerate() {
        let job = ThreadJob {
            cfg: cfg.clone(),
            settings: settings.clone(),
            thread: t,
            clients: share(cfg.concurrency, threads, t),
            connections: share(cfg.connections, threads, t).max(1),
            budget: budget.clone(),
            image: image.clone(),
            hard_deadline,
            live: live.clone(),
            barrier: barrier.clone(),
        };
        let handle = std::thread::Builder::new()
            .name(format!("regbench-{t}"))
            .spawn(move || job.run())
            .context("cannot start a client thread")?;
        handles.push(handle);
    }
    barrier.wait();
    let start = Instant::now();
    watch(cfg, &handles, &lives, start);

    let mut stats = Stats::default();
    let mut end = start;
    for h in handles {
        let (s, finished) = h
            .join()
            .map_err(|_| anyhow!("a client thread panicked"))??;
        stats.merge(s);
        end = end.max(finished);
    }
    Ok(Outcome {
        stats,
        elapsed: end.saturating_duration_since(start),
        setup,
        threads,
    })
}

/// Waits for the threads, drawing the live line when asked.
fn watch(
    cfg: &RunConfig,
    handles: &[JoinHandle<ThreadResult>],
    lives: &[Arc<Live>],
    start: Instant,
) {
    let sum = |f: fn(&Live) -> &AtomicU64| lives.iter().map(|l| Live::get(f(l))).sum::<u64>();
    let mut last = (start, 0u64, 0u64);
    let mut drawn = false;
    while !handles.iter().all(JoinHandle::is_finished) {
        std::thread::sleep(TICK);
        if !cfg.progress || last.0.elapsed() < PROGRESS_EVERY {
            continue;
        }
        let now = Instant::now();
        let (requests, bytes) = (sum(|l| &l.requests), sum(|l| &l.bytes));
        let secs = now.duration_since(last.0).as_secs_f64().max(1e-9);
        let remaining = match (cfg.duration, cfg.count) {
            (Some(d), _) => format!(
                "{:.0}s left",
                d.saturating_sub(now.duration_since(start)).as_secs_f64()
            ),
            (None, Some(c)) => format!("{}/{c} ops", sum(|l| &l.ops)),
            (None, None) => String::new(),
        };
        let line = format!(
            "{:>5.0}s  {remaining}  {:>9.0} req/s  {:>8.1} MB/s  {} errors",
            now.duration_since(start).as_secs_f64(),
            (requests - last.1) as f64 / secs,
            (bytes - last.2) as f64 / secs / 1e6,
            sum(|l| &l.errors),
        );
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{line}");
        let _ = err.flush();
        drawn = true;
        last = (now, requests, bytes);
    }
    if drawn {
        let _ = write!(std::io::stderr(), "\r\x1b[2K");
    }
}

/// Whether stderr is a terminal, where the live line belongs.
pub fn stderr_is_tty() -> bool {
    std::io::stderr().is_terminal()
}

type ThreadResult = anyhow::Result<(Stats, Instant)>;

/// One client thread's share of the run.
struct ThreadJob {
    cfg: RunConfig,
    /// `cfg.settings` with the token realm, when there is one.
    settings: Settings,
    thread: usize,
    clients: usize,
    connections: usize,
    budget: Arc<Budget>,
    image: Arc<Option<Image>>,
    hard_deadline: Option<Instant>,
    live: Arc<Live>,
    barrier: Arc<Barrier>,
}

impl ThreadJob {
    fn run(self) -> ThreadResult {
        let rt = runtime();
        // Released even when the runtime failed, so the main thread never
        // waits forever.
        self.barrier.wait();
        let mut rt = rt.context("cannot start a monoio runtime")?;
        let stats = rt.block_on(async {
            let pool = pool(&self.cfg, self.connections);
            let ctxs: Vec<Rc<Ctx>> = (0..self.clients)
                .map(|_| context(&self.cfg, &self.settings, pool.clone(), self.live.clone()))
                .collect();
            let job = Rc::new(self);
            let tasks: Vec<_> = ctxs
                .iter()
                .enumerate()
                .map(|(client, ctx)| monoio::spawn(job.clone().client(ctx.clone(), client)))
                .collect();
            for t in tasks {
                t.await;
            }
            let mut stats = Stats::default();
            for ctx in ctxs {
                stats.merge(ctx.stats.take());
            }
            stats
        });
        Ok((stats, Instant::now()))
    }

    /// One virtual client: operations back to back until the budget ends.
    async fn client(self: Rc<Self>, ctx: Rc<Ctx>, client: usize) {
        let op_kind = self.cfg.plan.scenario.op_kind();
        let image = self.image.as_ref().as_ref();
        let mut seq = 0;
        while let Some(ticket) = self.budget.take() {
            let who = Who {
                thread: self.thread,
                client,
                seq,
                ticket,
            };
            seq += 1;
            let started = Instant::now();
            let op = self.cfg.plan.run_op(&ctx, image, who);
            let result = match self.hard_deadline {
                Some(d) => {
                    match monoio::time::timeout_at(monoio::time::Instant::from_std(d), op).await {
                        Ok(r) => r,
                        Err(_) => {
                            ctx.stats.borrow_mut().cancelled += 1;
                            break;
                        }
                    }
                }
                None => op.await,
            };
            Live::add(&self.live.ops, 1);
            match result {
                Ok(()) => ctx.stats.borrow_mut().op_ok(op_kind, started.elapsed()),
                Err(f) => {
                    ctx.stats.borrow_mut().op_failed(op_kind);
                    if matches!(f.kind.as_str(), "connect" | "tls") {
                        monoio::time::sleep(CONNECT_BACKOFF).await;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_by_count() {
        let b = Budget::new(Some(3), None);
        let got: Vec<_> = std::iter::from_fn(|| b.take()).collect();
        assert_eq!(got, vec![0, 1, 2]);
        assert_eq!(b.take(), None);
    }

    #[test]
    fn budget_by_deadline() {
        let b = Budget::new(None, Some(Instant::now()));
        assert_eq!(b.take(), None);
        let b = Budget::new(Some(1), Some(Instant::now() + Duration::from_secs(60)));
        assert_eq!(b.take(), Some(0));
        assert_eq!(b.take(), None);
    }

    #[test]
    fn shares_add_up() {
        for (total, parts) in [(1, 1), (7, 2), (2, 2), (100, 3), (1, 2)] {
            let sum: usize = (0..parts).map(|i| share(total, parts, i)).sum();
            assert_eq!(sum, total);
        }
        assert_eq!(share(7, 2, 0), 4);
        assert_eq!(share(7, 2, 1), 3);
    }
}
