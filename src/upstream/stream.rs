//! A registry connection: plain TCP, or TLS when `[upstream] tls = true`.
//!
//! One enum rather than a trait object, so the plain path stays what it
//! was: a match per call, no box, no virtual call, and `as_tcp` hands the
//! socket to splice. A TLS connection never splices (its bytes must pass
//! through rustls) and moves its bodies in the batches `tls::TlsStream`
//! reads and writes.

use std::io;

use monoio::buf::Slice;
use monoio::net::TcpStream;

use crate::relay::Io;
use crate::tls::TlsStream;

#[derive(Debug)]
pub enum UpstreamStream {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
}

impl UpstreamStream {
    /// Whether a pooled connection is still usable: the registry has
    /// neither closed it nor sent anything unsolicited (over TLS, neither
    /// on the socket nor left unread in the stream). One non-blocking
    /// peek, far cheaper than a failed request.
    pub fn is_open(&mut self) -> bool {
        match self {
            UpstreamStream::Plain(s) => socket_is_quiet(s),
            UpstreamStream::Tls(t) => t.is_quiet() && socket_is_quiet(t.tcp()),
        }
    }
}

/// Nothing queued (EAGAIN) is the one healthy answer: data or EOF (Some)
/// or an error means the registry has spoken or gone.
fn socket_is_quiet(stream: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(crate::sys::socket::peek(stream, &mut byte), Ok(None))
}

impl Io for UpstreamStream {
    fn as_tcp(&mut self) -> Option<&mut TcpStream> {
        match self {
            UpstreamStream::Plain(s) => Some(s),
            UpstreamStream::Tls(_) => None,
        }
    }

    async fn read_vec(&mut self, buf: Vec<u8>, max: usize) -> (io::Result<usize>, Vec<u8>) {
        match self {
            UpstreamStream::Plain(s) => s.read_vec(buf, max).await,
            UpstreamStream::Tls(t) => t.read_vec(buf, max).await,
        }
    }

    async fn write_all_slice(&mut self, buf: Slice<Vec<u8>>) -> (io::Result<()>, Slice<Vec<u8>>) {
        match self {
            UpstreamStream::Plain(s) => Io::write_all_slice(s, buf).await,
            UpstreamStream::Tls(t) => t.write_all_slice(buf).await,
        }
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            UpstreamStream::Plain(s) => Io::shutdown(s).await,
            UpstreamStream::Tls(t) => t.shutdown().await,
        }
    }

    fn trim(&mut self) {
        if let UpstreamStream::Tls(t) = self {
            t.trim();
        }
    }

    fn tls_version(&self) -> Option<&'static str> {
        match self {
            UpstreamStream::Plain(_) => None,
            UpstreamStream::Tls(t) => t.version(),
        }
    }
}
