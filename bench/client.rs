//! The HTTP/1.1 client: one keep-alive connection per lease, plain or TLS,
//! speaking through regproxy's own framing code.
//!
//! Response heads are parsed by `regproxy_core::http::head::parse_response` and
//! chunked bodies decoded by `regproxy_core::http::body::ChunkedDecoder`, the same
//! strict code the proxy runs, read through `regproxy::relay::Buffered`.
//! Request bodies are generated as they are written (never held whole) and
//! hashed on the way out when the caller needs their digest.
//!
//! Connections live in a per-thread [`Pool`]: `--connections` of them shared
//! by the thread's clients, handed out in FIFO order, with no lock anywhere.

use std::cell::Cell;
use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent};
use monoio::net::TcpStream;
use monoio::BufResult;
use monoio_rustls::{ClientTlsStream, TlsConnector};
use rustls_pki_types::ServerName;

use regproxy::relay::{write_all, Buffered, Timer};
use regproxy_core::http::body::{write_chunk_header, ChunkedDecoder, CHUNK_TERMINATOR, LAST_CHUNK};
use regproxy_core::http::head::{parse_response, Method, Parse, ResponseBody, ResponseHead};

use crate::content::{Generated, Hasher};

mod pool;
pub use pool::Pool;

/// Read buffer per connection: large reads keep syscalls per GiB low.
const READ_BUF_BYTES: usize = 256 * 1024;
/// Generated body bytes per write (and per chunk when chunked).
const WRITE_CHUNK_BYTES: usize = 256 * 1024;
/// How much of a response body is kept when the caller asks for it (a
/// manifest, or an error body for the sample message).
pub const KEEP_LIMIT: usize = 4 << 20;
/// Bytes of an unexpected response kept for the error message.
const ERROR_BODY_LIMIT: usize = 512;
/// `User-Agent` sent on every request. It must not match the recipe's
/// `^(docker/1.(3|4|5(?!.[0-9]-dev))|Go ).*$` block.
pub const USER_AGENT: &str = concat!("regbench/", env!("CARGO_PKG_VERSION"));

/// A failed request or operation: a short kind for grouping ("timeout",
/// "status 401", "digest") and a message for the sample.
#[derive(Debug, Clone)]
pub struct Failure {
    pub kind: String,
    pub message: String,
}

impl Failure {
    pub fn new(kind: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            message: message.into(),
        }
    }

    fn io(what: &str, e: &io::Error) -> Self {
        let kind = match e.kind() {
            io::ErrorKind::TimedOut => "timeout",
            io::ErrorKind::UnexpectedEof => "closed",
            io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => "reset",
            _ => "io",
        };
        Self::new(kind, format!("{what}: {e}"))
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

/// The server being loaded, from a URL such as `https://localhost:5043`.
#[derive(Debug, Clone)]
pub struct Target {
    pub tls: bool,
    /// The authority as given, sent as `Host` (registries build upload URLs
    /// from it).
    pub authority: String,
    pub server_name: ServerName<'static>,
    pub addrs: Vec<SocketAddr>,
    pub url: String,
}

impl Target {
    /// Parses `http[s]://host[:port][/]` and resolves the host once.
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            anyhow::bail!("target {url:?} must start with http:// or https://");
        };
        let authority = rest.trim_end_matches('/');
        if authority.is_empty() || authority.contains(['/', '?', '#', '@']) {
            anyhow::bail!("target {url:?} must be scheme://host[:port], without a path");
        }
        let default_port = if tls { 443 } else { 80 };
        let (host, port) = split_host_port(authority, default_port)
            .ok_or_else(|| anyhow::anyhow!("target {url:?}: invalid host or port"))?;
        let addrs: Vec<SocketAddr> = (host.as_str(), port)
            .to_socket_addrs()
            .map_err(|e| anyhow::anyhow!("target {url:?}: cannot resolve {host}: {e}"))?
            .collect();
        if addrs.is_empty() {
            anyhow::bail!("target {url:?}: {host} has no address");
        }
        let server_name = ServerName::try_from(host.clone())
            .map_err(|e| anyhow::anyhow!("target {url:?}: {host} is not a TLS server name: {e}"))?;
        Ok(Self {
            tls,
            authority: authority.to_owned(),
            server_name,
            addrs,
            url: format!("{}://{authority}", if tls { "https" } else { "http" }),
        })
    }
}

/// `host`, `host:port`, `[v6]`, `[v6]:port` → (host without brackets, port).
fn split_host_port(authority: &str, default_port: u16) -> Option<(String, u16)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => default_port,
            None => return None,
        };
        return Some((host.to_owned(), port));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && !host.is_empty() => {
            Some((host.to_owned(), port.parse().ok()?))
        }
        Some(_) => None,
        None => Some((authority.to_owned(), default_port)),
    }
}

/// A connection's byte stream, plain or TLS.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<ClientTlsStream<TcpStream>>),
}

impl AsyncReadRent for Stream {
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Self::Plain(s) => s.read(buf).await,
            Self::Tls(s) => s.read(buf).await,
        }
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Self::Plain(s) => s.readv(buf).await,
            Self::Tls(s) => s.readv(buf).await,
        }
    }
}

impl AsyncWriteRent for Stream {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Self::Plain(s) => s.write(buf).await,
            Self::Tls(s) => s.write(buf).await,
        }
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Self::Plain(s) => s.writev(buf).await,
            Self::Tls(s) => s.writev(buf).await,
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(s) => s.flush().await,
            Self::Tls(s) => s.flush().await,
        }
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(s) => s.shutdown().await,
            Self::Tls(s) => s.shutdown().await,
        }
    }
}

impl regproxy::relay::Io for Stream {
    fn as_tcp(&mut self) -> Option<&mut TcpStream> {
        None
    }

    async fn read_vec(&mut self, buf: Vec<u8>, max: usize) -> (io::Result<usize>, Vec<u8>) {
        let (len, cap) = (buf.len(), buf.capacity());
        let end = len + (cap - len).min(max);
        let (res, slice) = self.read(buf.slice_mut(len..end)).await;
        (res, slice.into_inner())
    }

    async fn write_all_slice(
        &mut self,
        buf: monoio::buf::Slice<Vec<u8>>,
    ) -> (io::Result<()>, monoio::buf::Slice<Vec<u8>>) {
        let (res, buf) = monoio::io::AsyncWriteRentExt::write_all(self, buf).await;
        (res.map(|_| ()), buf)
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        AsyncWriteRent::shutdown(self).await
    }
}

/// One keep-alive connection.
pub struct Conn {
    io: Buffered<Stream>,
    /// Bounds each read and write, as regproxy's connections do.
    timer: Timer,
    /// Reused buffer for request heads and generated bodies.
    out: Vec<u8>,
    /// False once a response said close, or framing was cut short.
    reusable: bool,
    /// Requests completed on it; a failure on a used connection may be the
    /// server closing it while idle, and is retried once.
    served: u64,
}

impl Conn {
    /// Whether no request has completed on it yet.
    pub fn is_fresh(&self) -> bool {
        self.served == 0
    }
}

/// Opens connections to the target. One per thread.
pub struct Connector {
    pub target: Arc<Target>,
    tls: Option<TlsConnector>,
    timeout: Duration,
    /// The address that last worked is tried first (`localhost` may
    /// resolve to `::1` and `127.0.0.1` with only one listening).
    preferred: Cell<usize>,
}

impl Connector {
    pub fn new(
        target: Arc<Target>,
        tls: Option<Arc<rustls::ClientConfig>>,
        timeout: Duration,
    ) -> Self {
        Self {
            target,
            tls: tls.map(TlsConnector::from),
            timeout,
            preferred: Cell::new(0),
        }
    }

    /// TCP connect (each resolved address in turn), then the TLS handshake.
    pub async fn connect(&self) -> Result<Conn, Failure> {
        let mut last = Failure::new("connect", "no address to connect to");
        let addrs = &self.target.addrs;
        let first = self.preferred.get() % addrs.len().max(1);
        for (i, &addr) in addrs
            .iter()
            .enumerate()
            .cycle()
            .skip(first)
            .take(addrs.len())
        {
            let tcp = match monoio::time::timeout(self.timeout, TcpStream::connect_addr(addr)).await
            {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    last = Failure::new("connect", format!("connect {addr}: {e}"));
                    continue;
                }
                Err(_) => {
                    last = Failure::new("timeout", format!("connect {addr}: timed out"));
                    continue;
                }
            };
            self.preferred.set(i);
            // Small requests must not wait for Nagle.
            let _ = tcp.set_nodelay(true);
            let stream = match &self.tls {
                None => Stream::Plain(tcp),
                Some(connector) => {
                    let name = self.target.server_name.clone();
                    match monoio::time::timeout(self.timeout, connector.connect(name, tcp)).await {
                        Ok(Ok(s)) => Stream::Tls(Box::new(s)),
                        Ok(Err(e)) => {
                            return Err(Failure::new("tls", format!("handshake with {addr}: {e}")))
                        }
                        Err(_) => {
                            return Err(Failure::new(
                                "timeout",
                                format!("TLS handshake with {addr}: timed out"),
                            ))
                        }
                    }
                }
            };
            return Ok(Conn {
                io: Buffered::with_buf(stream, Vec::with_capacity(READ_BUF_BYTES)),
                timer: Timer::new(),
                out: Vec::with_capacity(WRITE_CHUNK_BYTES + 64),
                reusable: true,
                served: 0,
            });
        }
        Err(last)
    }
}

/// What a request carries.
#[derive(Debug, Clone)]
pub enum Body {
    Empty,
    Bytes(Bytes),
    /// Generated as it is written; `chunked` picks the framing, `hash`
    /// whether its digest is computed on the way (a monolithic upload knows
    /// it beforehand).
    Generated {
        gen: Generated,
        chunked: bool,
        hash: bool,
    },
}

/// One request. `path` is origin-form ("/v2/...?...").
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    pub path: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Body,
}

impl Request {
    pub fn new(method: Method, path: impl Into<String>) -> Self {
        Self {
            method,
            path: path.into(),
            headers: Vec::new(),
            body: Body::Empty,
        }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn body(mut self, body: Body) -> Self {
        self.body = body;
        self
    }
}

/// What to do with a response body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    /// Count it.
    Discard,
    /// Count and SHA-256 it.
    Hash,
    /// Keep up to [`KEEP_LIMIT`] bytes (and hash it).
    Keep,
}

/// A response, its body handled as the [`Sink`] said.
#[derive(Debug)]
pub struct Response {
    pub head: ResponseHead,
    /// Body bytes received.
    pub received: u64,
    /// Request body bytes sent.
    pub sent: u64,
    /// SHA-256 of the request body, when it was generated.
    pub sent_digest: Option<String>,
    /// SHA-256 of the response body, for [`Sink::Hash`] and [`Sink::Keep`].
    pub digest: Option<String>,
    /// The body, for [`Sink::Keep`]; otherwise its first bytes.
    pub body: Vec<u8>,
}

impl Response {
    pub fn status(&self) -> u16 {
        self.head.status
    }

    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.head
            .header(name)
            .and_then(|v| std::str::from_utf8(v).ok())
    }
}

/// Per-request settings shared by a run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `Authorization: Basic ...`, when credentials were given.
    pub authorization: Option<String>,
    /// `--token-auth` (and the `token` scenario): where Bearer tokens come
    /// from, learnt from the target's challenge before the run.
    pub bearer: Option<std::sync::Arc<crate::bearer::Realm>>,
    /// Longest wait for any read or write.
    pub timeout: Duration,
}

impl Conn {
    /// Sends `req` with `authorization` (the caller's choice: Basic, a
    /// Bearer token, or none) and reads the whole response.
    pub async fn exchange(
        &mut self,
        req: &Request,
        sink: Sink,
        host: &str,
        authorization: Option<&str>,
        s: &Settings,
    ) -> Result<Response, Failure> {
        self.reusable = false;
        let (sent, sent_digest) = match self.send(req, host, authorization, s).await {
            Ok(r) => r,
            // The server may have answered early (e.g. 401 before an upload
            // body) and closed: its answer says more than the broken pipe.
            Err(f) => match self.read_head(&req.method, s).await {
                Ok(head) => {
                    return Err(Failure::new(
                        format!("status {}", head.status),
                        format!(
                            "{} {}: answered {} {} before the request body was sent",
                            req.method.as_str(),
                            req.path,
                            head.status,
                            head.reason()
                        ),
                    ))
                }
                Err(_) => return Err(f),
            },
        };
        let head = self.read_head(&req.method, s).await?;
        let mut body = BodySink::new(sink);
        let complete = self.read_body(&head, &mut body, s).await?;
        self.reusable = complete && head.keep_alive;
        self.served += 1;
        Ok(Response {
            head,
            received: body.len,
            sent,
            sent_digest,
            digest: body.hasher.map(Hasher::finish),
            body: body.kept,
        })
    }

    /// Writes the head and body; returns body bytes sent and, for a
    /// generated body, its digest.
    async fn send(
        &mut self,
        req: &Request,
        host: &str,
        authorization: Option<&str>,
        s: &Settings,
    ) -> Result<(u64, Option<String>), Failure> {
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        write_head(&mut out, req, host, authorization);
        let result = match &req.body {
            Body::Empty => self.flush(&mut out, s).await.map(|()| (0, None)),
            Body::Bytes(b) => {
                out.extend_from_slice(b);
                self.flush(&mut out, s)
                    .await
                    .map(|()| (b.len() as u64, None))
            }
            Body::Generated { gen, chunked, hash } => {
                self.send_generated(&mut out, gen.clone(), *chunked, *hash, s)
                    .await
            }
        };
        self.out = out;
        result
    }

    async fn send_generated(
        &mut self,
        out: &mut Vec<u8>,
        mut gen: Generated,
        chunked: bool,
        hash: bool,
        s: &Settings,
    ) -> Result<(u64, Option<String>), Failure> {
        let mut hasher = hash.then(Hasher::default);
        let mut sent = 0u64;
        while gen.remaining() > 0 {
            let n = usize::try_from(gen.remaining())
                .map_or(WRITE_CHUNK_BYTES, |r| r.min(WRITE_CHUNK_BYTES));
            if chunked {
                write_chunk_header(n, out);
            }
            let start = out.len();
            gen.append(out, n);
            if let Some(h) = hasher.as_mut() {
                h.update(&out[start..]);
            }
            if chunked {
                out.extend_from_slice(CHUNK_TERMINATOR);
            }
            sent += n as u64;
            if gen.remaining() > 0 || !chunked {
                self.flush(out, s).await?;
            }
        }
        if chunked {
            out.extend_from_slice(LAST_CHUNK);
        }
        self.flush(out, s).await?;
        Ok((sent, hasher.map(Hasher::finish)))
    }

    async fn flush(&mut self, out: &mut Vec<u8>, s: &Settings) -> Result<(), Failure> {
        if out.is_empty() {
            return Ok(());
        }
        let (res, mut buf) = write_all(
            &mut self.io.io,
            std::mem::take(out),
            &mut self.timer,
            s.timeout,
        )
        .await;
        res.map_err(|e| Failure::io("write", &e))?;
        buf.clear();
        *out = buf;
        Ok(())
    }

    /// Reads up to a final (non-1xx) response head.
    async fn read_head(&mut self, method: &Method, s: &Settings) -> Result<ResponseHead, Failure> {
        loop {
            match parse_response(self.io.unconsumed(), method) {
                Ok(Parse::Complete { head, len }) => {
                    self.io.consume(len);
                    // RFC 9110 §15.2: interim responses precede the final one.
                    if head.status >= 200 {
                        return Ok(head);
                    }
                }
                Ok(Parse::Partial) => self.fill(s).await?,
                Err(e) => return Err(Failure::new("protocol", e.to_string())),
            }
        }
    }

    async fn fill(&mut self, s: &Settings) -> Result<(), Failure> {
        match self.io.fill(&mut self.timer, s.timeout).await {
            Ok(0) => Err(Failure::io("read", &io::ErrorKind::UnexpectedEof.into())),
            Ok(_) => Ok(()),
            Err(e) => Err(Failure::io("read", &e)),
        }
    }

    /// Reads the body as `head` frames it. Returns whether the connection is
    /// left at a message boundary (false after a close-delimited body).
    async fn read_body(
        &mut self,
        head: &ResponseHead,
        sink: &mut BodySink,
        s: &Settings,
    ) -> Result<bool, Failure> {
        match head.body {
            ResponseBody::None => Ok(true),
            ResponseBody::Length(n) => {
                let mut left = n;
                loop {
                    let take = (self.io.unconsumed().len() as u64).min(left) as usize;
                    sink.take(&self.io.unconsumed()[..take]);
                    self.io.consume(take);
                    left -= take as u64;
                    if left == 0 {
                        return Ok(true);
                    }
                    self.fill(s).await?;
                }
            }
            ResponseBody::Chunked => {
                let mut decoder = ChunkedDecoder::new();
                loop {
                    let p = decoder
                        .decode(self.io.unconsumed())
                        .map_err(|e| Failure::new("protocol", format!("chunked body: {e}")))?;
                    if let Some(range) = p.data.clone() {
                        sink.take(&self.io.unconsumed()[range]);
                    }
                    self.io.consume(p.consumed);
                    if p.done {
                        return Ok(true);
                    }
                    if p.data.is_none() {
                        self.fill(s).await?;
                    }
                }
            }
            ResponseBody::CloseDelimited => loop {
                let n = self.io.unconsumed().len();
                sink.take(self.io.unconsumed());
                self.io.consume(n);
                match self.io.fill(&mut self.timer, s.timeout).await {
                    Ok(0) => return Ok(false),
                    Ok(_) => {}
                    Err(e) => return Err(Failure::io("read", &e)),
                }
            },
        }
    }
}

/// The request line and fields. Framing fields come from the body, so they
/// can never disagree with it.
fn write_head(out: &mut Vec<u8>, req: &Request, host: &str, authorization: Option<&str>) {
    use std::io::Write;
    let _ = write!(
        out,
        "{} {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {USER_AGENT}\r\n",
        req.method.as_str(),
        req.path
    );
    if let Some(auth) = authorization {
        let _ = write!(out, "Authorization: {auth}\r\n");
    }
    for (name, value) in &req.headers {
        let _ = write!(out, "{name}: {value}\r\n");
    }
    match &req.body {
        Body::Empty if matches!(req.method, Method::Post | Method::Put | Method::Patch) => {
            out.extend_from_slice(b"Content-Length: 0\r\n");
        }
        Body::Empty => {}
        Body::Bytes(b) => {
            let _ = write!(out, "Content-Length: {}\r\n", b.len());
        }
        Body::Generated { chunked: true, .. } => {
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
        }
        Body::Generated { gen, .. } => {
            let _ = write!(out, "Content-Length: {}\r\n", gen.remaining());
        }
    }
    out.extend_from_slice(b"\r\n");
}

struct BodySink {
    hasher: Option<Hasher>,
    keep: bool,
    kept: Vec<u8>,
    len: u64,
}

impl BodySink {
    fn new(sink: Sink) -> Self {
        Self {
            hasher: (sink != Sink::Discard).then(Hasher::default),
            keep: sink == Sink::Keep,
            kept: Vec::new(),
            len: 0,
        }
    }

    fn take(&mut self, data: &[u8]) {
        self.len += data.len() as u64;
        if let Some(h) = self.hasher.as_mut() {
            h.update(data);
        }
        // Without Keep, the start is still kept: an error answer's body is
        // the best sample message there is.
        let limit = if self.keep {
            KEEP_LIMIT
        } else {
            ERROR_BODY_LIMIT
        };
        let room = limit.saturating_sub(self.kept.len());
        if room > 0 {
            self.kept.extend_from_slice(&data[..data.len().min(room)]);
        }
    }
}

/// A short, printable excerpt of an error body.
pub fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(ERROR_BODY_LIMIT)]);
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = Target::parse("http://127.0.0.1:5000").unwrap();
        assert!(!t.tls);
        assert_eq!(t.authority, "127.0.0.1:5000");
        assert_eq!(t.addrs, vec!["127.0.0.1:5000".parse().unwrap()]);
        let t = Target::parse("https://localhost:5043/").unwrap();
        assert!(t.tls);
        assert_eq!(t.authority, "localhost:5043");
        assert!(t.addrs.iter().all(|a| a.port() == 5043));
        let t = Target::parse("https://[::1]").unwrap();
        assert_eq!(t.addrs, vec!["[::1]:443".parse().unwrap()]);
        assert_eq!(t.url, "https://[::1]");
        for bad in [
            "ftp://x",
            "127.0.0.1:5000",
            "http://",
            "http://h/v2/",
            "http://u@h",
            "http://h:port",
            "http://[::1]x",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn heads_frame_from_the_body() {
        let s = |req: &Request| {
            let mut out = vec![];
            write_head(&mut out, req, "h:1", Some("Basic eA=="));
            String::from_utf8(out).unwrap()
        };
        let get = Request::new(Method::Get, "/v2/").header("Accept", "a/b");
        assert_eq!(
            s(&get),
            format!("GET /v2/ HTTP/1.1\r\nHost: h:1\r\nUser-Agent: {USER_AGENT}\r\nAuthorization: Basic eA==\r\nAccept: a/b\r\n\r\n")
        );
        let post = Request::new(Method::Post, "/u");
        assert!(s(&post).ends_with("Content-Length: 0\r\n\r\n"));
        let patch = Request::new(Method::Patch, "/u").body(Body::Generated {
            gen: Generated::new(1, 10),
            chunked: true,
            hash: true,
        });
        assert!(s(&patch).ends_with("Transfer-Encoding: chunked\r\n\r\n"));
        let put = Request::new(Method::Put, "/u").body(Body::Generated {
            gen: Generated::new(1, 10),
            chunked: false,
            hash: false,
        });
        assert!(s(&put).ends_with("Content-Length: 10\r\n\r\n"));
        let bytes = Request::new(Method::Put, "/m").body(Body::Bytes(Bytes::from_static(b"{}")));
        assert!(s(&bytes).ends_with("Content-Length: 2\r\n\r\n"));
    }

    #[test]
    fn sinks_and_excerpts() {
        let mut keep = BodySink::new(Sink::Keep);
        keep.take(b"ab");
        keep.take(b"c");
        assert_eq!(keep.kept, b"abc");
        assert_eq!(keep.len, 3);
        assert_eq!(
            keep.hasher.take().unwrap().finish(),
            crate::content::digest_of(b"abc")
        );
        let mut discard = BodySink::new(Sink::Discard);
        discard.take(&[b'y'; 2000]);
        assert!(discard.hasher.is_none());
        assert_eq!(discard.kept.len(), ERROR_BODY_LIMIT);
        assert_eq!(discard.len, 2000);
        assert_eq!(excerpt(b"{\"errors\":\n  [1]}"), "{\"errors\": [1]}");
        assert_eq!(excerpt(&[b'x'; 2000]).len(), ERROR_BODY_LIMIT);
    }
}
