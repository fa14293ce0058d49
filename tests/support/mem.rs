//! Resident memory of a process from `/proc/PID/status` (Linux).

use std::time::Duration;

/// A `kB` field of `/proc/PID/status` such as `VmHWM` or `VmRSS`, in KiB;
/// `None` when the process is gone or the field is missing.
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// Peak resident set size (`VmHWM`) in KiB.
pub fn vm_hwm_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmHWM")
}

/// Current resident set size (`VmRSS`) in KiB.
pub fn vm_rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS")
}

/// Resets the process's `VmHWM` to its current RSS (`echo 5 >
/// /proc/PID/clear_refs`, needs the same user or root), so a later
/// [`vm_hwm_kib`] measures only the peak of what ran in between.
pub fn reset_peak(pid: u32) -> std::io::Result<()> {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5")
}

/// Samples `VmRSS` every `every` on a thread until dropped; `max_kib()`
/// is the largest sample. Use it where `VmHWM` can't be reset, or to see
/// when the peak happened.
pub struct RssSampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    max: std::sync::Arc<std::sync::atomic::AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssSampler {
    pub fn start(pid: u32, every: Duration) -> RssSampler {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let max = std::sync::Arc::new(AtomicU64::new(0));
        let (s, m) = (stop.clone(), max.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Some(kib) = vm_rss_kib(pid) {
                    m.fetch_max(kib, Ordering::Relaxed);
                }
                // The sampling interval, not synchronisation.
                std::thread::sleep(every);
            }
        });
        RssSampler {
            stop,
            max,
            thread: Some(thread),
        }
    }

    pub fn max_kib(&self) -> u64 {
        self.max.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
