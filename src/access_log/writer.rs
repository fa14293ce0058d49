//! A worker's log writer: a thread that does the blocking `write(2)`s, so
//! a slow disk or a full stdout pipe stalls this thread, never the worker.
//! The worker hands it whole buffers through a bounded channel and never
//! waits for room (`AccessLog::flush` uses `try_send`).

use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::config::AccessLogTarget;
use crate::metrics::WorkerMetrics;

/// Buffers in flight between a worker and its writer.
pub const QUEUED_BUFFERS: usize = 4;

enum Sink {
    Stdout,
    File(File),
}

/// Starts the writer for `target`; `None` when the log is off.
pub(super) fn start(
    target: &AccessLogTarget,
    metrics: Arc<Vec<WorkerMetrics>>,
    worker: usize,
) -> io::Result<Option<(SyncSender<String>, JoinHandle<()>)>> {
    let sink = match target {
        AccessLogTarget::Off => return Ok(None),
        AccessLogTarget::Stdout => Sink::Stdout,
        AccessLogTarget::File(path) => Sink::File(open_append(path)?),
    };
    let (tx, rx) = sync_channel(QUEUED_BUFFERS);
    let handle = std::thread::Builder::new()
        .name(format!("regproxy-log-{worker}"))
        .spawn(move || run(&sink, &rx, &metrics, worker))?;
    Ok(Some((tx, handle)))
}

/// Writes buffers until the worker hangs up. A failed write is reported
/// and its lines counted as dropped: a full disk must not stop the proxy.
fn run(sink: &Sink, rx: &Receiver<String>, metrics: &[WorkerMetrics], worker: usize) {
    while let Ok(buf) = rx.recv() {
        let res = match sink {
            Sink::Stdout => io::stdout().lock().write_all(buf.as_bytes()),
            Sink::File(f) => (&*f).write_all(buf.as_bytes()),
        };
        if let Err(e) = res {
            tracing::warn!(error = %e, "access log write failed; lines dropped");
            if let Some(m) = metrics.get(worker) {
                WorkerMetrics::add(&m.access_log_dropped_total, super::lines::count(&buf));
            }
        }
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}
