//! `regbench origin`: a fast in-memory fake registry, so a proxy's own cost
//! can be measured without the real registry's disk and SHA-256 work.
//!
//! Thread-per-core like regproxy: one SO_REUSEPORT listener and one monoio
//! runtime per thread (`regproxy::listen::bind_all`), requests parsed by
//! `regproxy_core::http::head::parse_request`, chunked uploads decoded by
//! `regproxy_core::http::body::ChunkedDecoder`.
//!
//! It answers the ping, makes up a manifest for any repository and tag (see
//! [`catalog`]), serves those blobs from a shared pattern buffer, and accepts
//! and discards uploads: POST → 202 with a Location, PATCH and PUT read their
//! bodies, `PUT ?digest=` → 201. The upload's byte count rides in the
//! Location's `_n` parameter, so no per-upload state is kept. A repository
//! whose name contains `corrupt` gets its layers with the first byte
//! flipped, so clients can prove they verify digests.

mod catalog;
mod route;

use std::cell::Cell;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use monoio::buf::IoBuf;
use monoio::io::AsyncWriteRentExt;
use monoio::net::{TcpListener, TcpStream};

use regproxy::relay::{Buffered, Timer};
use regproxy_core::http::body::ChunkedDecoder;
use regproxy_core::http::head::{
    parse_request, HeadError, Method, Parse, RequestBody, RequestHead, MAX_HEAD_BYTES,
};

use crate::content::{Hasher, PATTERN_BYTES};
use crate::registry::MANIFEST_TYPE;
use catalog::{Blob, Catalog};
pub use catalog::{Shape, MAX_LAYERS};
use regproxy_core::http::reason::reason;
use route::{query_param, route, Route};

/// Read buffer per connection; uploads are read and dropped through it.
const READ_BUF_BYTES: usize = 256 * 1024;
/// Submission queue entries per io_uring instance.
const URING_ENTRIES: u32 = 1024;
/// Back-off after accept fails (e.g. out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// Repositories whose name contains this get corrupted layers.
pub const CORRUPT_MARKER: &str = "corrupt";

/// How the origin runs.
#[derive(Debug, Clone)]
pub struct OriginConfig {
    pub listen: SocketAddr,
    pub threads: usize,
    /// The image shape for tags that do not spell one.
    pub default: Shape,
    /// Longest wait for a client's next bytes, or for it to take ours.
    pub timeout: Duration,
}

/// Binds, prints the listening line on stdout, and serves until killed.
pub fn serve(cfg: &OriginConfig) -> anyhow::Result<()> {
    let threads = cfg.threads.max(1);
    let (addr, listeners) = regproxy::listen::bind_all(cfg.listen, threads)
        .with_context(|| format!("cannot listen on {}", cfg.listen))?;
    let catalog = Arc::new(Catalog::new(cfg.default));
    let run = u64::from(std::process::id());
    let mut handles = Vec::with_capacity(threads);
    for (id, listener) in listeners.into_iter().enumerate() {
        let worker = Worker {
            catalog: catalog.clone(),
            id,
            run,
            uploads: Cell::new(0),
            timeout: cfg.timeout,
        };
        handles.push(
            std::thread::Builder::new()
                .name(format!("origin-{id}"))
                .spawn(move || -> anyhow::Result<()> {
                    let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
                        .enable_timer()
                        .with_entries(URING_ENTRIES)
                        .build()
                        .context("cannot start a monoio runtime")?;
                    rt.block_on(worker.accept_loop(listener))
                })
                .context("cannot start an origin thread")?,
        );
    }
    println!("regbench origin listening on {addr} ({threads} threads)");
    use std::io::Write;
    let _ = std::io::stdout().flush();
    for h in handles {
        h.join()
            .map_err(|_| anyhow::anyhow!("an origin thread panicked"))??;
    }
    Ok(())
}

/// One thread of the origin.
struct Worker {
    catalog: Arc<Catalog>,
    id: usize,
    run: u64,
    uploads: Cell<u64>,
    timeout: Duration,
}

/// A reply, written by [`Conn::reply`].
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: ReplyBody,
}

enum ReplyBody {
    /// No body; Content-Length still says `length` (HEAD on a blob that was
    /// uploaded and discarded).
    None { length: u64 },
    /// A small body, written together with the head.
    Small(Bytes),
    /// `size` bytes of `pattern` repeated, the first byte flipped if asked.
    Pattern {
        pattern: Bytes,
        size: u64,
        corrupt: bool,
    },
}

impl ReplyBody {
    fn length(&self) -> u64 {
        match self {
            Self::None { length } => *length,
            Self::Small(b) => b.len() as u64,
            Self::Pattern { size, .. } => *size,
        }
    }
}

impl Reply {
    fn new(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: ReplyBody::None { length: 0 },
        }
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    fn body(mut self, body: ReplyBody) -> Self {
        self.body = body;
        self
    }

    /// A registry-style error (`{"errors":[{"code":...}]}`).
    fn error(status: u16, code: &str, message: &str) -> Self {
        let body = format!(r#"{{"errors":[{{"code":"{code}","message":"{message}"}}]}}"#);
        Reply::new(status)
            .header("Content-Type", "application/json")
            .body(ReplyBody::Small(Bytes::from(body)))
    }
}

struct Conn {
    io: Buffered<TcpStream>,
    /// Bounds each read, as regproxy's connections do.
    timer: Timer,
    out: Vec<u8>,
}

impl Worker {
    async fn accept_loop(self, listener: std::net::TcpListener) -> anyhow::Result<()> {
        let listener = TcpListener::from_std(listener).context("cannot adopt the listener")?;
        let me = Rc::new(self);
        loop {
            match listener.accept().await {
                Ok((stream, _peer)) => {
                    let _ = stream.set_nodelay(true);
                    let me = me.clone();
                    monoio::spawn(async move {
                        let mut conn = Conn {
                            io: Buffered::with_buf(stream, Vec::with_capacity(READ_BUF_BYTES)),
                            timer: Timer::new(),
                            out: Vec::with_capacity(4096),
                        };
                        // Any I/O error just ends this connection.
                        let _ = me.serve(&mut conn).await;
                    });
                }
                Err(_) => monoio::time::sleep(ACCEPT_BACKOFF).await,
            }
        }
    }

    /// Requests on one connection until it closes or must be closed.
    async fn serve(&self, conn: &mut Conn) -> io::Result<()> {
        loop {
            let head = match self.read_head(conn).await? {
                Ok(Some(head)) => head,
                Ok(None) => return Ok(()),
                Err(e) => {
                    let status = match e {
                        HeadError::UriTooLong => 414,
                        HeadError::HeadTooLarge => 431,
                        HeadError::NotImplemented(_) => 501,
                        HeadError::BadRequest(_) | HeadError::BadResponse(_) => 400,
                    };
                    let reply = Reply::error(status, "UNSUPPORTED", &e.to_string());
                    return conn.reply(reply, false, false, self.timeout).await;
                }
            };
            if head.expect_continue && head.body != RequestBody::None {
                conn.write(
                    Bytes::from_static(b"HTTP/1.1 100 Continue\r\n\r\n"),
                    self.timeout,
                )
                .await?;
            }
            let is_manifest_put =
                head.method == Method::Put && matches!(route(head.path()), Route::Manifest { .. });
            let (received, digest) = conn
                .consume_body(head.body, is_manifest_put, self.timeout)
                .await?;
            let keep = head.keep_alive;
            let is_head = head.method == Method::Head;
            let reply = self.answer(&head, received, digest);
            conn.reply(reply, keep, is_head, self.timeout).await?;
            if !keep {
                return Ok(());
            }
        }
    }

    /// `Ok(Ok(None))`: the client closed between requests.
    async fn read_head(
        &self,
        conn: &mut Conn,
    ) -> io::Result<Result<Option<RequestHead>, HeadError>> {
        loop {
            match parse_request(conn.io.unconsumed()) {
                Ok(Parse::Complete { head, len }) => {
                    conn.io.consume(len);
                    return Ok(Ok(Some(head)));
                }
                Ok(Parse::Partial) if conn.io.unconsumed().len() >= MAX_HEAD_BYTES => {
                    return Ok(Err(HeadError::HeadTooLarge))
                }
                Ok(Parse::Partial) => {
                    if conn.io.fill(&mut conn.timer, self.timeout).await? == 0 {
                        return Ok(Ok(None));
                    }
                }
                Err(e) => return Ok(Err(e)),
            }
        }
    }

    /// The answer to one request whose body has been read.
    fn answer(&self, head: &RequestHead, received: u64, digest: Option<String>) -> Reply {
        let m = &head.method;
        let read = matches!(m, Method::Get | Method::Head);
        match route(head.path()) {
            Route::Ping if read => Reply::new(200)
                .header("Content-Type", "application/json")
                .body(ReplyBody::Small(Bytes::from_static(b"{}"))),
            Route::Manifest { reference, .. } if read => match self.catalog.manifest(reference) {
                Some(man) => Reply::new(200)
                    .header("Content-Type", MANIFEST_TYPE)
                    .header("Docker-Content-Digest", man.digest.clone())
                    .body(ReplyBody::Small(man.body.clone())),
                None => Reply::error(404, "MANIFEST_UNKNOWN", "manifest unknown"),
            },
            Route::Manifest { name, .. } if *m == Method::Put => {
                let digest = digest.unwrap_or_default();
                Reply::new(201)
                    .header("Location", format!("/v2/{name}/manifests/{digest}"))
                    .header("Docker-Content-Digest", digest)
            }
            Route::Blob { name, digest } if read => match self.catalog.blob(digest) {
                Some(Blob::Pattern { pattern, size }) => Reply::new(200)
                    .header("Content-Type", "application/octet-stream")
                    .header("Docker-Content-Digest", digest)
                    .body(ReplyBody::Pattern {
                        pattern,
                        size,
                        corrupt: name.contains(CORRUPT_MARKER),
                    }),
                Some(Blob::Bytes(b)) => Reply::new(200)
                    .header("Content-Type", "application/octet-stream")
                    .header("Docker-Content-Digest", digest)
                    .body(ReplyBody::Small(b)),
                Some(Blob::Uploaded { size }) if *m == Method::Head => Reply::new(200)
                    .header("Docker-Content-Digest", digest)
                    .body(ReplyBody::None { length: size }),
                _ => Reply::error(404, "BLOB_UNKNOWN", "blob unknown to registry"),
            },
            Route::UploadStart { name } if *m == Method::Post => {
                match query_param(head.query(), "digest") {
                    // A monolithic POST: the whole blob came with it.
                    Some(d) => self.upload_done(name, &d, received),
                    None => {
                        let id = self.next_upload();
                        self.upload_progress(name, &id, 0)
                    }
                }
            }
            Route::Upload { name, id } => {
                let before: u64 = query_param(head.query(), "_n")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                let total = before.saturating_add(received);
                match m {
                    Method::Patch => self.upload_progress(name, id, total),
                    Method::Put => match query_param(head.query(), "digest") {
                        Some(d) => self.upload_done(name, &d, total),
                        None => Reply::error(400, "DIGEST_INVALID", "digest missing"),
                    },
                    Method::Get => Reply::new(204)
                        .header("Range", format!("0-{}", total.saturating_sub(1)))
                        .header("Docker-Upload-UUID", id),
                    Method::Delete => Reply::new(204),
                    _ => Reply::error(405, "UNSUPPORTED", "method not allowed"),
                }
            }
            Route::Manifest { .. } | Route::Blob { .. } if *m == Method::Delete => Reply::new(202),
            Route::NotFound => Reply::error(404, "NAME_UNKNOWN", "no such endpoint"),
            _ => Reply::error(405, "UNSUPPORTED", "method not allowed"),
        }
    }

    fn next_upload(&self) -> String {
        let n = self.uploads.get();
        self.uploads.set(n + 1);
        format!("{:x}-{}-{n}", self.run, self.id)
    }

    fn upload_progress(&self, name: &str, id: &str, total: u64) -> Reply {
        Reply::new(202)
            .header(
                "Location",
                format!("/v2/{name}/blobs/uploads/{id}?_n={total}"),
            )
            .header("Range", format!("0-{}", total.saturating_sub(1)))
            .header("Docker-Upload-UUID", id)
    }

    fn upload_done(&self, name: &str, digest: &str, total: u64) -> Reply {
        self.catalog.uploaded(digest, total);
        Reply::new(201)
            .header("Location", format!("/v2/{name}/blobs/{digest}"))
            .header("Docker-Content-Digest", digest)
    }
}

impl Conn {
    /// Reads and drops a request body; hashes it when asked (a manifest PUT
    /// answers with the digest of what it got).
    async fn consume_body(
        &mut self,
        body: RequestBody,
        hash: bool,
        timeout: Duration,
    ) -> io::Result<(u64, Option<String>)> {
        let mut hasher = hash.then(Hasher::default);
        let mut seen = 0u64;
        let mut take = |data: &[u8]| {
            seen += data.len() as u64;
            if let Some(h) = hasher.as_mut() {
                h.update(data);
            }
        };
        match body {
            RequestBody::None => {}
            RequestBody::Length(n) => {
                let mut left = n;
                loop {
                    let k = (self.io.unconsumed().len() as u64).min(left) as usize;
                    take(&self.io.unconsumed()[..k]);
                    self.io.consume(k);
                    left -= k as u64;
                    if left == 0 {
                        break;
                    }
                    if self.io.fill(&mut self.timer, timeout).await? == 0 {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                }
            }
            RequestBody::Chunked => {
                let mut decoder = ChunkedDecoder::new();
                loop {
                    let p = decoder
                        .decode(self.io.unconsumed())
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                    if let Some(r) = p.data.clone() {
                        take(&self.io.unconsumed()[r]);
                    }
                    self.io.consume(p.consumed);
                    if p.done {
                        break;
                    }
                    if p.data.is_none() && self.io.fill(&mut self.timer, timeout).await? == 0 {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                }
            }
        }
        Ok((seen, hasher.map(Hasher::finish)))
    }

    async fn write<T: IoBuf>(&mut self, buf: T, timeout: Duration) -> io::Result<()> {
        match monoio::time::timeout(timeout, self.io.io.write_all(buf)).await {
            Ok((res, _)) => res.map(drop),
            Err(_) => Err(io::ErrorKind::TimedOut.into()),
        }
    }

    /// Writes the head and, unless it answers HEAD, the body.
    async fn reply(
        &mut self,
        reply: Reply,
        keep_alive: bool,
        is_head: bool,
        timeout: Duration,
    ) -> io::Result<()> {
        use std::io::Write;
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        let _ = write!(
            out,
            "HTTP/1.1 {} {}\r\nDocker-Distribution-Api-Version: registry/2.0\r\nContent-Length: {}\r\n",
            reply.status,
            reason(reply.status),
            reply.body.length(),
        );
        for (name, value) in &reply.headers {
            let _ = write!(out, "{name}: {value}\r\n");
        }
        if !keep_alive {
            out.extend_from_slice(b"Connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if let (ReplyBody::Small(b), false) = (&reply.body, is_head) {
            out.extend_from_slice(b);
        }
        let (res, buf) = match monoio::time::timeout(timeout, self.io.io.write_all(out)).await {
            Ok(r) => r,
            Err(_) => return Err(io::ErrorKind::TimedOut.into()),
        };
        self.out = buf;
        res?;
        match reply.body {
            ReplyBody::Pattern {
                pattern,
                size,
                corrupt,
            } if !is_head => self.write_pattern(pattern, size, corrupt, timeout).await,
            _ => Ok(()),
        }
    }

    async fn write_pattern(
        &mut self,
        pattern: Bytes,
        size: u64,
        corrupt: bool,
        timeout: Duration,
    ) -> io::Result<()> {
        let mut left = size;
        let mut first = true;
        while left > 0 {
            let n = usize::try_from(left)
                .map_or(PATTERN_BYTES, |l| l.min(PATTERN_BYTES))
                .min(pattern.len());
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "empty pattern"));
            }
            if first && corrupt {
                let mut bad = pattern[..n].to_vec();
                bad[0] ^= 0xff;
                self.write(bad, timeout).await?;
            } else {
                self.write(Bytes::slice(&pattern, ..n), timeout).await?;
            }
            first = false;
            left -= n as u64;
        }
        Ok(())
    }
}
