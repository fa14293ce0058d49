//! systemd socket activation (sd_listen_fds(3)): listening sockets systemd
//! opened from a `.socket` unit and passed as descriptors 3.. with
//! LISTEN_FDS/LISTEN_PID. systemd keeps them open across a restart of the
//! service, so connections arriving in between wait in their queue.

use std::io;
use std::net::TcpListener;
use std::os::fd::{FromRawFd, OwnedFd};

/// The sockets systemd passed to this process, owned; empty when it passed
/// none (LISTEN_PID names another process, or is unset).
pub fn systemd_listeners() -> io::Result<Vec<TcpListener>> {
    let fds: Vec<OwnedFd> = sd_notify::listen_fds()?
        .map(|raw| {
            // SAFETY: sd_notify::listen_fds yields each descriptor of the
            // LISTEN_FDS range once, only when LISTEN_PID is this process:
            // systemd opened them for us before exec and nothing else in
            // the process has wrapped them.
            #[allow(unsafe_code)]
            unsafe {
                OwnedFd::from_raw_fd(raw)
            }
        })
        .collect();
    let listeners: Vec<TcpListener> = fds.into_iter().map(TcpListener::from).collect();
    for l in &listeners {
        l.set_nonblocking(true)?;
    }
    Ok(listeners)
}
