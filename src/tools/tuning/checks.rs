//! The host rules. Each is one function of ([`HostFacts`], [`Needs`]) with
//! the reason it exists written above it; each returns its table rows
//! (usually one). A fact that cannot be read gives an `ok` row that says so,
//! never a guess.

use super::{Check, HostFacts, Needs, Nic, Verdict};

/// Rules in table order.
pub type Rule = fn(&HostFacts, &Needs) -> Vec<Check>;

pub const ALL: &[Rule] = &[
    nr_open,
    file_max,
    limit_nofile,
    somaxconn,
    syn_backlog,
    unprivileged_port,
    port_range,
    tw_reuse,
    core_mem_max,
    tcp_mem,
    pipe_max_size,
    migrate_req,
    io_uring_disabled,
    io_uring_works,
    memlock,
    transparent_hugepages,
    governor,
    nic,
];

/// Concurrent client connections to size for when `max_connections` is not
/// set: what a CI fleet of a few thousand runners keeps open.
pub const SIZING_CONNECTIONS: u64 = 16_384;
// Descriptors per connection and the reserve besides connections are the
// ones `admission` derives its default cap from: one budget, two readers.
use crate::admission::{derive_max_connections, FDS_PER_CONNECTION};

/// Descriptors regproxy holds besides connections.
fn fds_reserved(workers: usize) -> u64 {
    crate::admission::FD_RESERVE_BASE + crate::admission::FD_RESERVE_PER_WORKER * workers as u64
}
/// The descriptor limit we recommend: systemd's default hard limit since
/// v240, and what nginx and HAProxy packagers use.
pub const RECOMMENDED_NOFILE: u64 = 1_048_576;
/// Socket buffer ceiling for autotuning: enough for a 1 GiB layer at
/// 10 Gbit/s over a 10 ms round trip (bandwidth-delay product 12.5 MB).
pub const RECOMMENDED_TCP_MEM_MAX: u64 = 16 << 20;
/// Below this autotuning ceiling a single long-haul body stream is capped.
pub const MIN_TCP_MEM_MAX: u64 = 4 << 20;
/// Ephemeral ports we recommend: above the registered services people run
/// next to a registry (5000, 8080, 9090), 55,296 ports.
pub const PORT_RANGE: &str = "10240 65535";
/// Bytes an io_uring of `worker::URING_ENTRIES` (1024) entries pins: SQ
/// entries 64 B each, CQ entries 16 B each (twice as many), rounded up.
pub const RING_MEMLOCK_BYTES: u64 = 128 << 10;

fn row(
    setting: &str,
    current: impl ToString,
    recommended: impl ToString,
    verdict: Verdict,
    why: String,
) -> Check {
    Check {
        setting: setting.to_owned(),
        current: current.to_string(),
        recommended: recommended.to_string(),
        why,
        verdict,
    }
}

fn unreadable(setting: &str, recommended: impl ToString) -> Vec<Check> {
    vec![row(
        setting,
        "-",
        recommended,
        Verdict::Ok,
        "not readable here".to_owned(),
    )]
}

/// Concurrent connections this configuration is sized for.
fn connections(needs: &Needs) -> u64 {
    needs.max_connections.unwrap_or(SIZING_CONNECTIONS)
}

/// Descriptors those connections take.
fn fds_needed(needs: &Needs) -> u64 {
    fds_reserved(needs.workers) + connections(needs) * FDS_PER_CONNECTION
}

/// Too few descriptors for an explicit `max_connections` breaks it (accepts
/// fail with EMFILE); for the derived default it only caps concurrency.
fn short_fds(needs: &Needs) -> Verdict {
    if needs.max_connections.is_some() {
        Verdict::Breaks
    } else {
        Verdict::Slows
    }
}

fn limit_text(v: u64) -> String {
    if v == u64::MAX {
        "unlimited".to_owned()
    } else {
        v.to_string()
    }
}

// fs.nr_open is the ceiling for any process's RLIMIT_NOFILE: LimitNOFILE
// above it is silently clamped (or the unit fails to start).
fn nr_open(f: &HostFacts, n: &Needs) -> Vec<Check> {
    let rec = fds_needed(n).max(RECOMMENDED_NOFILE);
    let Some(cur) = f.int("fs.nr_open") else {
        return unreadable("fs.nr_open", rec);
    };
    let need = fds_needed(n);
    let (verdict, why) = if cur < need {
        (
            short_fds(n),
            format!(
                "no process may hold more than {cur} descriptors; {} connections need {need}",
                connections(n)
            ),
        )
    } else {
        (
            Verdict::Ok,
            format!(
                "ceiling for LimitNOFILE; {} connections need {need}",
                connections(n)
            ),
        )
    };
    vec![row("fs.nr_open", cur, rec, verdict, why)]
}

// fs.file-max caps open files system-wide; past it every open() and
// accept() on the host fails with ENFILE.
fn file_max(f: &HostFacts, n: &Needs) -> Vec<Check> {
    let need = fds_needed(n);
    let rec = need.max(RECOMMENDED_NOFILE) * 2;
    let Some(cur) = f.int("fs.file-max") else {
        return unreadable("fs.file-max", rec);
    };
    let (verdict, why) = if cur < need {
        (
            short_fds(n),
            format!("the whole host may open {cur} files; regproxy alone needs {need}"),
        )
    } else {
        (
            Verdict::Ok,
            format!("system-wide open files; regproxy needs {need}"),
        )
    };
    vec![row("fs.file-max", cur, rec, verdict, why)]
}

// regproxy raises its soft RLIMIT_NOFILE to the hard limit at start, so the
// hard limit (systemd's LimitNOFILE) is what caps concurrent connections:
// `admission` caps connections at what it leaves after the reserve.
fn limit_nofile(f: &HostFacts, n: &Needs) -> Vec<Check> {
    let need = fds_needed(n);
    let rec = need.max(RECOMMENDED_NOFILE);
    let Some((_, hard)) = f.nofile else {
        return unreadable("LimitNOFILE (RLIMIT_NOFILE hard)", rec);
    };
    let fixed = fds_reserved(n.workers);
    let (verdict, why) = if hard < fixed {
        (
            Verdict::Breaks,
            format!(
                "{hard} descriptors do not cover the {fixed} regproxy holds before any connection"
            ),
        )
    } else if hard < need {
        let cap = derive_max_connections(hard, n.workers);
        (short_fds(n), format!("caps concurrent connections at {cap} (max_connections derived from it, {FDS_PER_CONNECTION} descriptors each); {} wanted", connections(n)))
    } else {
        (
            Verdict::Ok,
            format!(
                "regproxy raises its soft limit to this; {} connections need {need}",
                connections(n)
            ),
        )
    };
    vec![row(
        "LimitNOFILE (RLIMIT_NOFILE hard)",
        limit_text(hard),
        rec,
        verdict,
        why,
    )]
}

// listen(2) silently truncates the backlog to somaxconn: SYNs beyond a full
// accept queue are dropped and the client retries after a second or more.
fn somaxconn(f: &HostFacts, n: &Needs) -> Vec<Check> {
    let Some(cur) = f.int("net.core.somaxconn") else {
        return unreadable("net.core.somaxconn", n.backlog);
    };
    let (verdict, why) = if cur < u64::from(n.backlog) {
        (Verdict::Slows, format!("somaxconn {cur} < backlog {}: bursts beyond {cur} pending connections per worker are dropped and retried after 1s+", n.backlog))
    } else {
        (
            Verdict::Ok,
            format!(
                "accept queue per worker socket; regproxy asks for {}",
                n.backlog
            ),
        )
    };
    vec![row("net.core.somaxconn", cur, n.backlog, verdict, why)]
}

// Half-open connections (SYN received, handshake not done) queue here; a
// burst beyond it falls back to SYN cookies or drops.
fn syn_backlog(f: &HostFacts, n: &Needs) -> Vec<Check> {
    let Some(cur) = f.int("net.ipv4.tcp_max_syn_backlog") else {
        return unreadable("net.ipv4.tcp_max_syn_backlog", n.backlog);
    };
    let (verdict, why) = if cur < u64::from(n.backlog) {
        (Verdict::Slows, format!("{cur} < backlog {}: handshakes beyond it in a burst fall back to SYN cookies or are dropped", n.backlog))
    } else {
        (Verdict::Ok, "half-open connections in a burst".to_owned())
    };
    vec![row(
        "net.ipv4.tcp_max_syn_backlog",
        cur,
        n.backlog,
        verdict,
        why,
    )]
}

// Binding a port below this needs root or CAP_NET_BIND_SERVICE (the unit
// grants it with AmbientCapabilities); without either regproxy cannot start.
fn unprivileged_port(f: &HostFacts, n: &Needs) -> Vec<Check> {
    let port = u64::from(n.listen.port());
    let Some(start) = f.int("net.ipv4.ip_unprivileged_port_start") else {
        return unreadable("net.ipv4.ip_unprivileged_port_start", "-");
    };
    let (verdict, why) = match f.can_bind_privileged {
        Some(false) if port != 0 && port < start => (
            Verdict::Breaks,
            format!("listen port {port} < {start} and this process lacks CAP_NET_BIND_SERVICE: bind fails (the unit grants it)"),
        ),
        _ => (Verdict::Ok, format!("listen port {port} can be bound")),
    };
    vec![row(
        "net.ipv4.ip_unprivileged_port_start",
        start,
        "1024 (grant the capability instead)",
        verdict,
        why,
    )]
}

// Every upstream connection takes an ephemeral port per (upstream address,
// port); with the range exhausted, connect() fails and clients get 502.
fn port_range(f: &HostFacts, n: &Needs) -> Vec<Check> {
    let Some(r) = f
        .ints("net.ipv4.ip_local_port_range")
        .filter(|r| r.len() == 2)
    else {
        return unreadable("net.ipv4.ip_local_port_range", PORT_RANGE);
    };
    let size = r[1].saturating_sub(r[0]) + 1;
    let need = connections(n);
    let (verdict, why) = if size < need {
        (Verdict::Slows, format!("{size} ports per upstream address < {need} connections: connects beyond it fail with 502 (more upstream servers multiply it)"))
    } else {
        (
            Verdict::Ok,
            format!("{size} ephemeral ports per upstream address for {need} connections"),
        )
    };
    vec![row(
        "net.ipv4.ip_local_port_range",
        format!("{} {}", r[0], r[1]),
        PORT_RANGE,
        verdict,
        why,
    )]
}

// Closed upstream connections sit in TIME_WAIT for 60 s holding their port;
// tw_reuse lets new outgoing connects take them. 2 = loopback only (default).
fn tw_reuse(f: &HostFacts, n: &Needs) -> Vec<Check> {
    let Some(cur) = f.int("net.ipv4.tcp_tw_reuse") else {
        return unreadable("net.ipv4.tcp_tw_reuse", 1);
    };
    let reuses = cur == 1 || (cur == 2 && n.upstream_loopback);
    let (verdict, why) = if reuses {
        (
            Verdict::Ok,
            "upstream ports in TIME_WAIT are reused for new connects".to_owned(),
        )
    } else {
        (
            Verdict::Slows,
            "upstream ports stay in TIME_WAIT 60 s after each close; churn exhausts the port range"
                .to_owned(),
        )
    };
    vec![row("net.ipv4.tcp_tw_reuse", cur, 1, verdict, why)]
}

// rmem_max/wmem_max cap only buffers set with SO_RCVBUF/SO_SNDBUF; regproxy
// sets none and leaves sizing to autotuning (tcp_rmem/tcp_wmem), so these
// are reported, never blamed.
fn core_mem_max(f: &HostFacts, _: &Needs) -> Vec<Check> {
    ["net.core.rmem_max", "net.core.wmem_max"]
        .iter()
        .map(|name| match f.int(name) {
            None => row(name, "-", RECOMMENDED_TCP_MEM_MAX, Verdict::Ok, "not readable here".to_owned()),
            Some(cur) => row(
                name,
                cur,
                RECOMMENDED_TCP_MEM_MAX,
                Verdict::Ok,
                "caps SO_RCVBUF/SO_SNDBUF, which regproxy does not set (autotuning: tcp_rmem/tcp_wmem)".to_owned(),
            ),
        })
        .collect()
}

// The third field is autotuning's ceiling per socket: a layer streamed over
// a long or fast link is capped at ceiling / round-trip time.
fn tcp_mem(f: &HostFacts, _: &Needs) -> Vec<Check> {
    [
        ("net.ipv4.tcp_rmem", "4096 131072 16777216"),
        ("net.ipv4.tcp_wmem", "4096 16384 16777216"),
    ]
    .iter()
    .map(|(name, rec)| match f.ints(name).filter(|v| v.len() == 3) {
        None => row(name, "-", rec, Verdict::Ok, "not readable here".to_owned()),
        Some(v) if v[2] < MIN_TCP_MEM_MAX => row(
            name,
            format!("{} {} {}", v[0], v[1], v[2]),
            rec,
            Verdict::Slows,
            format!(
                "a single stream is capped at {} KiB per round trip",
                v[2] >> 10
            ),
        ),
        Some(v) => row(
            name,
            format!("{} {} {}", v[0], v[1], v[2]),
            rec,
            Verdict::Ok,
            "autotuning ceiling per socket".to_owned(),
        ),
    })
    .collect()
}

// Unprivileged F_SETPIPE_SZ above fs.pipe-max-size fails with EPERM, so the
// splice pipes stay at the 64 KiB default: four times the syscalls per GiB.
fn pipe_max_size(f: &HostFacts, n: &Needs) -> Vec<Check> {
    let Some(cur) = f.int("fs.pipe-max-size") else {
        return unreadable("fs.pipe-max-size", n.splice_pipe_size);
    };
    let (verdict, why) = if cur < n.splice_pipe_size {
        (
            Verdict::Slows,
            format!(
                "splice_pipe_size {} > {cur}: pipes stay smaller, more splice calls per GiB",
                n.splice_pipe_size
            ),
        )
    } else {
        (
            Verdict::Ok,
            format!("splice pipes of {} bytes are allowed", n.splice_pipe_size),
        )
    };
    vec![row(
        "fs.pipe-max-size",
        cur,
        cur.max(n.splice_pipe_size),
        verdict,
        why,
    )]
}

// When a SO_REUSEPORT listener closes, connections waiting in its accept
// queue are reset unless this moves them to another listener of the group.
// regproxy's socket handoff (`upgrade_socket`) does not need it; a restart
// that only starts a second process and stops the first does.
fn migrate_req(f: &HostFacts, _: &Needs) -> Vec<Check> {
    let Some(cur) = f.int("net.ipv4.tcp_migrate_req") else {
        return unreadable("net.ipv4.tcp_migrate_req", 1);
    };
    let (verdict, why) = if cur == 1 {
        (
            Verdict::Ok,
            "queued connections move to the new process when the old one closes".to_owned(),
        )
    } else {
        (
            Verdict::Slows,
            "a restart without socket handoff resets connections queued in the old process"
                .to_owned(),
        )
    };
    vec![row("net.ipv4.tcp_migrate_req", cur, 1, verdict, why)]
}

// 1 limits io_uring to kernel.io_uring_group, 2 disables it: the workers
// then fall back to epoll (more syscalls per request).
fn io_uring_disabled(f: &HostFacts, n: &Needs) -> Vec<Check> {
    let Some(cur) = f.int("kernel.io_uring_disabled") else {
        return unreadable("kernel.io_uring_disabled", 0);
    };
    let (verdict, why) = match cur {
        0 => (Verdict::Ok, "io_uring allowed".to_owned()),
        _ if !n.wants_io_uring => (
            Verdict::Ok,
            "driver = \"epoll\": io_uring not used".to_owned(),
        ),
        1 if f.io_uring_works == Some(true) => (
            Verdict::Ok,
            "io_uring limited to kernel.io_uring_group, which this user is in".to_owned(),
        ),
        1 => (
            Verdict::Slows,
            "io_uring limited to kernel.io_uring_group: others fall back to epoll".to_owned(),
        ),
        _ => (
            Verdict::Slows,
            "io_uring disabled: workers fall back to epoll".to_owned(),
        ),
    };
    vec![row("kernel.io_uring_disabled", cur, 0, verdict, why)]
}

// The sysctl is not the only way to lose io_uring: seccomp filters,
// containers and old kernels too. So probe it.
fn io_uring_works(f: &HostFacts, n: &Needs) -> Vec<Check> {
    let (current, verdict, why) = match f.io_uring_works {
        None => (
            "-",
            Verdict::Ok,
            "not probed (not the live host)".to_owned(),
        ),
        Some(true) => (
            "yes",
            Verdict::Ok,
            "a ring with every operation monoio uses was set up".to_owned(),
        ),
        Some(false) if n.wants_io_uring => (
            "no",
            Verdict::Slows,
            "workers fall back to epoll (kernel, seccomp or memlock)".to_owned(),
        ),
        Some(false) => (
            "no",
            Verdict::Ok,
            "driver = \"epoll\": io_uring not used".to_owned(),
        ),
    };
    vec![row("io_uring works", current, "yes", verdict, why)]
}

// Before 5.12 the kernel charged io_uring rings to RLIMIT_MEMLOCK (often
// 64 KiB); each worker's ring then fails to set up and falls back to epoll.
fn memlock(f: &HostFacts, n: &Needs) -> Vec<Check> {
    let need = n.workers as u64 * RING_MEMLOCK_BYTES;
    let Some((soft, _)) = f.memlock else {
        return unreadable("LimitMEMLOCK (RLIMIT_MEMLOCK)", need);
    };
    let old_kernel = f.kernel().is_some_and(|k| k < (5, 12));
    let (verdict, why) = if !old_kernel {
        (
            Verdict::Ok,
            "kernel 5.12+ charges rings to the memory cgroup, not this limit".to_owned(),
        )
    } else if n.wants_io_uring && soft < need {
        (
            Verdict::Slows,
            format!(
                "this kernel charges rings to it: {} workers need {need} bytes, else epoll",
                n.workers
            ),
        )
    } else {
        (Verdict::Ok, format!("covers {} rings", n.workers))
    };
    vec![row(
        "LimitMEMLOCK (RLIMIT_MEMLOCK)",
        limit_text(soft),
        need,
        verdict,
        why,
    )]
}

// "always" lets khugepaged compact memory behind the workers' backs:
// latency spikes and RSS growth for many small buffers.
fn transparent_hugepages(f: &HostFacts, _: &Needs) -> Vec<Check> {
    let setting = "transparent_hugepage/enabled";
    match f.thp.as_deref() {
        None => unreadable(setting, "madvise"),
        Some("always") => vec![row(
            setting,
            "always",
            "madvise",
            Verdict::Slows,
            "compaction stalls show as tail latency; regproxy does not use huge pages".to_owned(),
        )],
        Some(m) => vec![row(
            setting,
            m,
            "madvise",
            Verdict::Ok,
            "huge pages only where asked for".to_owned(),
        )],
    }
}

// Power-saving governors clock cores down between bursts; the first
// requests of every burst pay for it.
fn governor(f: &HostFacts, _: &Needs) -> Vec<Check> {
    let setting = "cpufreq scaling_governor";
    if f.governors.is_empty() {
        return vec![row(
            setting,
            "-",
            "performance",
            Verdict::Ok,
            "not exposed (VM or no cpufreq driver)".to_owned(),
        )];
    }
    let mut kinds = f.governors.clone();
    kinds.sort();
    kinds.dedup();
    let verdict = if kinds.iter().all(|g| g == "performance") {
        Verdict::Ok
    } else {
        Verdict::Slows
    };
    vec![row(
        setting,
        kinds.join(","),
        "performance",
        verdict,
        "clocked-down cores add latency at the start of each burst".to_owned(),
    )]
}

/// The cores the workers are pinned to (worker i on the i-th allowed CPU),
/// or may run on when `pin_workers` is off.
pub fn worker_cores(f: &HostFacts, n: &Needs) -> Vec<usize> {
    if f.cpus.is_empty() {
        return (0..n.workers).collect();
    }
    let mut cores: Vec<usize> = f.cpus.iter().copied().cycle().take(n.workers).collect();
    cores.sort_unstable();
    cores.dedup();
    cores
}

// Packets are processed on the CPU their interrupt (or RPS) lands on; a
// worker whose core receives no packets pays a cross-core wake-up per
// read, and one core taking every interrupt caps the whole proxy.
fn nic(f: &HostFacts, n: &Needs) -> Vec<Check> {
    if n.listen.ip().is_loopback() {
        return vec![row(
            "NIC",
            "loopback",
            "-",
            Verdict::Ok,
            "listen address is loopback: no NIC queues".to_owned(),
        )];
    }
    let carrying: Vec<&Nic> = f
        .nics
        .iter()
        .filter(|nic| nic.addrs.contains(&n.listen.ip()))
        .collect();
    let nics: Vec<&Nic> = if carrying.is_empty() {
        f.nics.iter().collect()
    } else {
        carrying
    };
    if nics.is_empty() {
        return vec![row(
            "NIC",
            "-",
            "-",
            Verdict::Ok,
            "no physical NIC found under /sys/class/net".to_owned(),
        )];
    }
    let cores = worker_cores(f, n);
    let mut rows = Vec::new();
    for nic in nics {
        rows.push(irq_affinity(nic, &cores));
        rows.push(steering(nic, &cores, "rps_cpus", &nic.rps, nic.irqs.len()));
        rows.push(steering(nic, &cores, "xps_cpus", &nic.xps, nic.irqs.len()));
        rows.extend(offloads(nic));
    }
    rows
}

fn cpu_list(cpus: &[usize]) -> String {
    cpus.iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn irq_affinity(nic: &Nic, cores: &[usize]) -> Check {
    let setting = format!("{} IRQ affinity", nic.name);
    if nic.irqs.is_empty() {
        return row(
            &setting,
            "-",
            cpu_list(cores),
            Verdict::Ok,
            "no MSI interrupts listed".to_owned(),
        );
    }
    let mut targets: Vec<usize> = nic
        .irqs
        .iter()
        .flat_map(|(_, c)| c.iter().copied())
        .collect();
    targets.sort_unstable();
    targets.dedup();
    let single = nic
        .irqs
        .iter()
        .all(|(_, c)| c.len() == 1 && c == &nic.irqs[0].1);
    let (verdict, why) = if nic.irqs.len() > 1 && cores.len() > 1 && single {
        (
            Verdict::Slows,
            format!(
                "every queue interrupts CPU {}: one core does all packet work",
                cpu_list(&nic.irqs[0].1)
            ),
        )
    } else if !targets.iter().any(|c| cores.contains(c)) {
        (
            Verdict::Slows,
            "interrupts land on no worker core: each read wakes across cores".to_owned(),
        )
    } else {
        (
            Verdict::Ok,
            format!(
                "{} interrupts over CPUs {}",
                nic.irqs.len(),
                cpu_list(&targets)
            ),
        )
    };
    row(&setting, cpu_list(&targets), cpu_list(cores), verdict, why)
}

// With fewer hardware queues than workers, RPS (receive) and XPS (transmit)
// spread the protocol work over the workers' cores in software.
fn steering(nic: &Nic, cores: &[usize], file: &str, queues: &[Vec<usize>], irqs: usize) -> Check {
    let setting = format!("{} {file}", nic.name);
    let off = queues.iter().all(Vec::is_empty);
    let current = if off {
        "0".to_owned()
    } else {
        queues
            .iter()
            .map(|q| cpu_list(q))
            .collect::<Vec<_>>()
            .join(" | ")
    };
    let few_queues = irqs.max(queues.len()) < cores.len();
    let (verdict, why) = if queues.is_empty() {
        (Verdict::Ok, "no queues listed".to_owned())
    } else if off && few_queues {
        (
            Verdict::Slows,
            format!(
                "{} queues for {} worker cores and steering off",
                queues.len(),
                cores.len()
            ),
        )
    } else {
        (
            Verdict::Ok,
            "hardware queues or steering cover the worker cores".to_owned(),
        )
    };
    row(&setting, current, cpu_list(cores), verdict, why)
}

// GRO/GSO/TSO batch segments into 64 KiB units; without them every 1.5 KiB
// packet is a trip through the stack and large bodies cost several times
// the CPU.
fn offloads(nic: &Nic) -> Vec<Check> {
    if nic.offloads.is_empty() {
        return vec![row(
            &format!("{} offloads", nic.name),
            "-",
            "on",
            Verdict::Ok,
            "ethtool not available: not checked".to_owned(),
        )];
    }
    nic.offloads
        .iter()
        .map(|(name, on)| {
            let setting = format!("{} {name}", nic.name);
            if *on {
                row(
                    &setting,
                    "on",
                    "on",
                    Verdict::Ok,
                    "segments batched".to_owned(),
                )
            } else {
                row(
                    &setting,
                    "off",
                    "on",
                    Verdict::Slows,
                    "every MTU-sized packet crosses the stack alone".to_owned(),
                )
            }
        })
        .collect()
}
