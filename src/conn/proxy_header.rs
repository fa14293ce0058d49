//! The socket side of the PROXY protocol: runs once per connection, before
//! TLS. It peeks at the socket (so nothing past the header is consumed),
//! lets the core's parser and rules decide
//! (`regproxy_core::proxy_protocol`), and reads exactly the header's bytes
//! away.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use monoio::net::TcpStream;

use crate::cidr::{self, Cidr};
use crate::proxy_protocol::{decide, parse, Error, Mode, Parse, Refusal, MAX_V2_BYTES};
use crate::sys::socket;

/// Bytes peeked at once: enough for any header we accept.
const PEEK_BYTES: usize = MAX_V2_BYTES;
/// Wait between peeks while a header is only partly here. Headers arrive
/// in one segment in practice; this only stops a trickling peer from
/// making us spin (readiness stays set while the partial bytes sit there).
const PARTIAL_RETRY: Duration = Duration::from_millis(2);

/// Reads the PROXY header of a freshly accepted connection, before TLS,
/// within `deadline`. Returns the client address to use (the carried one,
/// or `peer`), or `None` when the connection must be closed (the reason is
/// logged at debug level).
pub async fn accept(
    stream: &TcpStream,
    peer: SocketAddr,
    mode: Mode,
    trusted_proxies: &[Cidr],
    deadline: Duration,
) -> Option<SocketAddr> {
    if mode == Mode::Off {
        return Some(peer);
    }
    let trusted = cidr::any_contains(trusted_proxies, peer.ip());
    // A required header cannot come from an untrusted peer: close without
    // reading a byte.
    if !trusted && mode != Mode::Optional {
        tracing::debug!(client = %peer, "closing: {}", Refusal::Untrusted);
        return None;
    }
    let result = match monoio::time::timeout(deadline, read_header(stream)).await {
        Ok(Ok(parsed)) => decide(mode, trusted, peer, parsed),
        Ok(Err(e)) => {
            tracing::debug!(client = %peer, error = %e, "closing: reading the PROXY header failed");
            return None;
        }
        Err(_elapsed) => {
            tracing::debug!(client = %peer, "closing: no PROXY header in time");
            return None;
        }
    };
    match result {
        Ok((client, 0)) => Some(client),
        Ok((client, len)) => match consume(stream, len) {
            Ok(()) => Some(client),
            Err(e) => {
                tracing::debug!(client = %peer, error = %e, "closing: consuming the PROXY header failed");
                None
            }
        },
        Err(refusal) => {
            tracing::debug!(client = %peer, "closing: {refusal}");
            None
        }
    }
}

/// Peeks until [`parse`] can decide. `Ok(Ok(Absent))` also covers a peer
/// that closed before sending anything.
async fn read_header(stream: &TcpStream) -> std::io::Result<Result<Parse, Error>> {
    let mut buf = vec![0u8; PEEK_BYTES];
    let mut last_len = 0;
    loop {
        stream.readable(false).await?;
        let Some(n) = socket::peek(stream, &mut buf)? else {
            continue;
        };
        if n == 0 {
            return Ok(Ok(Parse::Absent));
        }
        match parse(&buf[..n]) {
            Ok(Parse::Partial) => {
                if n == last_len {
                    monoio::time::sleep(PARTIAL_RETRY).await;
                }
                last_len = n;
            }
            other => return Ok(other),
        }
    }
}

/// Reads exactly `len` bytes that a peek already saw in the socket buffer,
/// so nothing after the header is taken from TLS or HTTP.
fn consume(stream: &TcpStream, len: usize) -> std::io::Result<()> {
    let mut buf = [0u8; PEEK_BYTES];
    let mut left = len.min(PEEK_BYTES);
    let start = Instant::now();
    while left > 0 {
        let n = socket::recv_now(stream, &mut buf[..left])?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        left -= n;
        // Peeked bytes are already queued; a second pass is all it can take.
        if left > 0 && start.elapsed() > PARTIAL_RETRY {
            return Err(std::io::ErrorKind::WouldBlock.into());
        }
    }
    Ok(())
}
