//! [`HostFacts`]: everything the host rules look at, read once from files
//! under a root directory (`/` on a real host, a fake tree in tests), so the
//! rules themselves stay pure. Only two facts need the live host and are
//! skipped under any other root: whether io_uring actually works, and the
//! NIC offloads `ethtool -k` reports.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The sysctls the rules read, by dotted name.
pub const SYSCTLS: &[&str] = &[
    "fs.nr_open",
    "fs.file-max",
    "fs.pipe-max-size",
    "net.core.somaxconn",
    "net.ipv4.tcp_max_syn_backlog",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_tw_reuse",
    "net.core.rmem_max",
    "net.core.wmem_max",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
    "net.ipv4.tcp_migrate_req",
    "kernel.io_uring_disabled",
    "kernel.osrelease",
];

/// A snapshot of the host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostFacts {
    /// Dotted sysctl name to its value, whitespace collapsed to one space;
    /// names that could not be read are absent.
    pub sysctl: BTreeMap<String, String>,
    /// RLIMIT_NOFILE (soft, hard) of this process; `u64::MAX` = unlimited.
    pub nofile: Option<(u64, u64)>,
    /// RLIMIT_MEMLOCK (soft, hard) in bytes.
    pub memlock: Option<(u64, u64)>,
    /// Whether this process may bind ports below 1024 (root or
    /// CAP_NET_BIND_SERVICE in its effective set).
    pub can_bind_privileged: Option<bool>,
    /// CPUs this process may run on (the workers are pinned to these).
    pub cpus: Vec<usize>,
    /// Transparent hugepages mode: "always", "madvise" or "never".
    pub thp: Option<String>,
    /// scaling_governor of each CPU that exposes one.
    pub governors: Vec<String>,
    /// Whether an io_uring with the operations monoio needs can be set up;
    /// `None` when not probed (not the live host).
    pub io_uring_works: Option<bool>,
    /// Physical NICs (those with a `device` under /sys/class/net).
    pub nics: Vec<Nic>,
}

/// One physical NIC's queues and offloads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Nic {
    pub name: String,
    /// Addresses on it (live host only).
    pub addrs: Vec<IpAddr>,
    /// Each of its interrupt lines and the CPUs it may fire on.
    pub irqs: Vec<(u32, Vec<usize>)>,
    /// Each rx queue's RPS CPU set (empty = RPS off).
    pub rps: Vec<Vec<usize>>,
    /// Each tx queue's XPS CPU set (empty = XPS off).
    pub xps: Vec<Vec<usize>>,
    /// Offload name (as ethtool -k prints it) to on/off; empty when unknown.
    pub offloads: BTreeMap<String, bool>,
}

impl HostFacts {
    /// Reads the facts under `root` (`/` for the host itself).
    pub fn read(root: &Path) -> HostFacts {
        let live = root == Path::new("/");
        let mut sysctl = BTreeMap::new();
        for name in SYSCTLS {
            if let Some(v) = read_trim(&root.join("proc/sys").join(name.replace('.', "/"))) {
                sysctl.insert((*name).to_owned(), v);
            }
        }
        let limits = std::fs::read_to_string(root.join("proc/self/limits")).unwrap_or_default();
        let status = std::fs::read_to_string(root.join("proc/self/status")).unwrap_or_default();
        let mut nics = read_nics(root);
        if live {
            for nic in &mut nics {
                nic.offloads = ethtool_offloads(&nic.name);
            }
            fill_addrs(&mut nics);
        }
        HostFacts {
            sysctl,
            nofile: parse_limit(&limits, "Max open files"),
            memlock: parse_limit(&limits, "Max locked memory"),
            can_bind_privileged: parse_can_bind(&status),
            cpus: status_field(&status, "Cpus_allowed_list")
                .map(parse_cpu_list)
                .unwrap_or_default(),
            thp: read_trim(&root.join("sys/kernel/mm/transparent_hugepage/enabled"))
                .and_then(|t| bracketed(&t)),
            governors: read_governors(root),
            io_uring_works: live.then(monoio::utils::detect_uring),
            nics,
        }
    }

    /// A sysctl parsed as one integer.
    pub fn int(&self, name: &str) -> Option<u64> {
        self.sysctl.get(name)?.parse().ok()
    }

    /// A sysctl parsed as whitespace-separated integers.
    pub fn ints(&self, name: &str) -> Option<Vec<u64>> {
        self.sysctl
            .get(name)?
            .split_whitespace()
            .map(|v| v.parse().ok())
            .collect()
    }

    /// The kernel's (major, minor) from `kernel.osrelease`.
    pub fn kernel(&self) -> Option<(u32, u32)> {
        let rel = self.sysctl.get("kernel.osrelease")?;
        let mut parts = rel.split(|c: char| !c.is_ascii_digit());
        Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
    }
}

fn read_trim(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(text.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// `always [madvise] never` -> `madvise`.
fn bracketed(text: &str) -> Option<String> {
    let start = text.find('[')? + 1;
    let end = start + text[start..].find(']')?;
    Some(text[start..end].to_owned())
}

/// (soft, hard) from a /proc/PID/limits line such as
/// `Max open files            1024                 524288               files`.
pub fn parse_limit(limits: &str, name: &str) -> Option<(u64, u64)> {
    let line = limits.lines().find(|l| l.starts_with(name))?;
    let mut values = line[name.len()..].split_whitespace().map(|v| match v {
        "unlimited" => Some(u64::MAX),
        n => n.parse().ok(),
    });
    Some((values.next()??, values.next()??))
}

fn status_field<'a>(status: &'a str, name: &str) -> Option<&'a str> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}

/// CAP_NET_BIND_SERVICE is bit 10 of the capability sets (linux/capability.h).
const CAP_NET_BIND_SERVICE: u32 = 10;

fn parse_can_bind(status: &str) -> Option<bool> {
    let eff = u64::from_str_radix(status_field(status, "CapEff")?, 16).ok()?;
    Some(eff & (1 << CAP_NET_BIND_SERVICE) != 0)
}

/// `0-3,8,10-11` -> [0, 1, 2, 3, 8, 10, 11].
pub fn parse_cpu_list(list: &str) -> Vec<usize> {
    let mut out = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        if let (Ok(a), Ok(b)) = (a.parse::<usize>(), b.parse::<usize>()) {
            out.extend(a..=b.min(a + 4096));
        }
    }
    out
}

/// A sysfs CPU mask such as `00000000,0000000f` -> [0, 1, 2, 3].
pub fn parse_cpu_mask(mask: &str) -> Vec<usize> {
    let mut out = Vec::new();
    let digits: Vec<u32> = mask
        .chars()
        .filter(|c| *c != ',')
        .filter_map(|c| c.to_digit(16))
        .collect();
    for (i, d) in digits.iter().rev().enumerate() {
        for bit in 0..4 {
            if d & (1 << bit) != 0 {
                out.push(i * 4 + bit);
            }
        }
    }
    out
}

fn sorted_entries(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn read_governors(root: &Path) -> Vec<String> {
    sorted_entries(&root.join("sys/devices/system/cpu"))
        .into_iter()
        .filter(|p| {
            let n = file_name(p);
            n.len() > 3 && n.starts_with("cpu") && n[3..].bytes().all(|b| b.is_ascii_digit())
        })
        .filter_map(|p| read_trim(&p.join("cpufreq/scaling_governor")))
        .collect()
}

fn read_nics(root: &Path) -> Vec<Nic> {
    let mut nics = Vec::new();
    for dev in sorted_entries(&root.join("sys/class/net")) {
        // Virtual interfaces (lo, veth, bridges) have no `device`.
        if !dev.join("device").exists() {
            continue;
        }
        let irqs = sorted_entries(&dev.join("device/msi_irqs"))
            .into_iter()
            .filter_map(|p| file_name(&p).parse::<u32>().ok())
            .map(|irq| {
                let cpus = read_trim(&root.join(format!("proc/irq/{irq}/smp_affinity_list")))
                    .map(|l| parse_cpu_list(&l))
                    .unwrap_or_default();
                (irq, cpus)
            })
            .collect();
        let queues = |prefix: &str, file: &str| -> Vec<Vec<usize>> {
            sorted_entries(&dev.join("queues"))
                .into_iter()
                .filter(|q| file_name(q).starts_with(prefix))
                .map(|q| {
                    read_trim(&q.join(file))
                        .map(|m| parse_cpu_mask(&m))
                        .unwrap_or_default()
                })
                .collect()
        };
        nics.push(Nic {
            name: file_name(&dev),
            addrs: Vec::new(),
            irqs,
            rps: queues("rx-", "rps_cpus"),
            xps: queues("tx-", "xps_cpus"),
            offloads: BTreeMap::new(),
        });
    }
    nics
}

/// `ethtool -k NIC` lines such as `generic-receive-offload: on [fixed]`,
/// for the offloads the rules look at; empty when ethtool is missing.
fn ethtool_offloads(nic: &str) -> BTreeMap<String, bool> {
    let Ok(out) = Command::new("ethtool").arg("-k").arg(nic).output() else {
        return BTreeMap::new();
    };
    parse_ethtool(&String::from_utf8_lossy(&out.stdout))
}

/// The offloads that matter for a proxy moving large bodies.
pub const OFFLOADS: &[&str] = &[
    "generic-receive-offload",
    "generic-segmentation-offload",
    "tcp-segmentation-offload",
];

pub fn parse_ethtool(text: &str) -> BTreeMap<String, bool> {
    text.lines()
        .filter_map(|l| {
            let (name, rest) = l.trim().split_once(':')?;
            OFFLOADS
                .contains(&name)
                .then(|| (name.to_owned(), rest.trim().starts_with("on")))
        })
        .collect()
}

/// Addresses per interface, from getifaddrs(3).
fn fill_addrs(nics: &mut [Nic]) {
    for (name, ip) in crate::sys::interface_addrs() {
        if let Some(nic) = nics.iter_mut().find(|n| n.name == name) {
            nic.addrs.push(ip);
        }
    }
}
