//! A minimal blocking HTTP/1.1 client over `std::net::TcpStream`, optionally
//! wrapped in a rustls (ring) client that trusts the test CA.
//!
//! It writes exactly the bytes it is given (so tests can send malformed
//! framing), reads one response at a time (Content-Length, chunked, or until
//! close), and can tell whether the server closed the connection afterwards.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use rustls::pki_types::ServerName;

/// Read/connect timeout for every socket unless a test changes it.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long [`send_raw`] waits for a close after a response that does not
/// announce `Connection: close`.
pub const CLOSE_WAIT: Duration = Duration::from_millis(500);
/// How long [`send_raw`] waits for a close after a `Connection: close` response.
pub const CLOSE_WAIT_ANNOUNCED: Duration = Duration::from_secs(5);
/// Largest response head accepted.
const MAX_HEAD: usize = 256 * 1024;

/// Where to connect: a loopback address, plain or TLS.
#[derive(Clone)]
pub struct Endpoint {
    pub addr: SocketAddr,
    tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        write!(f, "{scheme}://{}", self.addr)
    }
}

impl Endpoint {
    pub fn plain(addr: SocketAddr) -> Self {
        Self { addr, tls: None }
    }

    /// TLS with SNI / verified name `localhost`.
    pub fn tls(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> Self {
        Self::tls_named(addr, config, "localhost")
    }

    /// TLS verifying `name` (a DNS name or an IP literal such as `127.0.0.1`).
    pub fn tls_named(addr: SocketAddr, config: Arc<rustls::ClientConfig>, name: &str) -> Self {
        let name = ServerName::try_from(name.to_owned()).expect("valid TLS server name");
        Self {
            addr,
            tls: Some((config, name)),
        }
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }
}

impl From<SocketAddr> for Endpoint {
    fn from(addr: SocketAddr) -> Self {
        Self::plain(addr)
    }
}

impl From<&Endpoint> for Endpoint {
    fn from(ep: &Endpoint) -> Self {
        ep.clone()
    }
}

/// One parsed response.
#[derive(Debug, Clone, Default)]
pub struct RawResponse {
    pub status: u16,
    pub reason: String,
    /// Header names as sent, in order, values trimmed.
    pub headers: Vec<(String, String)>,
    /// The decoded body (de-chunked); empty when streamed to a sink.
    pub body: Vec<u8>,
    /// Decoded body length, also when streamed to a sink.
    pub body_len: u64,
    /// The body was framed by the server closing the connection.
    pub body_until_close: bool,
    /// The body was chunked.
    pub chunked: bool,
    /// Trailer fields after a chunked body.
    pub trailers: Vec<(String, String)>,
    /// Statuses of 1xx responses read before this one (by [`send_raw`]).
    pub interim: Vec<u16>,
    /// The server closed the connection after this response (set by
    /// [`send_raw`] and [`request`]; [`Conn::read_response`] leaves it false,
    /// use [`Conn::is_closed`]).
    pub closed: bool,
}

/// First value of field `name` (case-insensitive) in a parsed head.
pub fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    find_headers(headers, name).into_iter().next()
}

/// Every value of field `name` (case-insensitive) in a parsed head.
pub fn find_headers<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

impl RawResponse {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// Every value of header `name` (case-insensitive).
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        find_headers(&self.headers, name)
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn announces_close(&self) -> bool {
        self.header_all("connection")
            .iter()
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("close"))
    }
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => &s.sock,
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// One client connection; responses are read in order.
pub struct Conn {
    stream: Stream,
    buf: Vec<u8>,
    eof: bool,
}

fn is_eof_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

impl Conn {
    /// Connects (and for TLS completes the handshake, so certificate errors
    /// surface here).
    pub fn connect(ep: impl Into<Endpoint>) -> io::Result<Conn> {
        let ep = ep.into();
        let tcp = TcpStream::connect_timeout(&ep.addr, DEFAULT_TIMEOUT)?;
        tcp.set_read_timeout(Some(DEFAULT_TIMEOUT))?;
        tcp.set_write_timeout(Some(DEFAULT_TIMEOUT))?;
        tcp.set_nodelay(true)?;
        let stream = match ep.tls {
            None => Stream::Plain(tcp),
            Some((config, name)) => {
                let mut conn =
                    rustls::ClientConnection::new(config, name).map_err(io::Error::other)?;
                let mut tcp = tcp;
                while conn.is_handshaking() {
                    conn.complete_io(&mut tcp)?;
                }
                Stream::Tls(Box::new(rustls::StreamOwned::new(conn, tcp)))
            }
        };
        Ok(Conn {
            stream,
            buf: Vec::new(),
            eof: false,
        })
    }

    /// Connects over plain TCP from `src` (for instance one of 127.0.0.0/8's
    /// many addresses), so a test can play many clients.
    pub fn connect_from(src: std::net::IpAddr, addr: SocketAddr) -> io::Result<Conn> {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            None,
        )?;
        socket.bind(&SocketAddr::new(src, 0).into())?;
        socket.connect_timeout(&addr.into(), DEFAULT_TIMEOUT)?;
        let tcp: TcpStream = socket.into();
        tcp.set_read_timeout(Some(DEFAULT_TIMEOUT))?;
        tcp.set_write_timeout(Some(DEFAULT_TIMEOUT))?;
        tcp.set_nodelay(true)?;
        Ok(Conn {
            stream: Stream::Plain(tcp),
            buf: Vec::new(),
            eof: false,
        })
    }

    /// Sets the read timeout used while waiting for response bytes.
    pub fn set_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        self.stream.tcp().set_read_timeout(Some(timeout))
    }

    /// Writes `bytes` exactly as given.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// Half-closes the TCP connection for writing (no TLS close_notify).
    pub fn shutdown_write(&mut self) -> io::Result<()> {
        self.stream.tcp().shutdown(Shutdown::Write)
    }

    /// The local address of this connection.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.stream.tcp().local_addr()
    }

    /// Reads more bytes into the buffer; `Ok(0)` at end of stream.
    fn fill(&mut self) -> io::Result<usize> {
        if self.eof {
            return Ok(0);
        }
        let mut chunk = [0u8; 64 * 1024];
        // A read with a socket timeout is not restarted after a signal.
        let read = loop {
            match self.stream.read(&mut chunk) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        match read {
            Ok(0) => {
                self.eof = true;
                Ok(0)
            }
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(n)
            }
            // A TLS peer that closes without close_notify, or a reset: end of stream.
            Err(e) if is_eof_error(&e) => {
                self.eof = true;
                Ok(0)
            }
            Err(e) => Err(e),
        }
    }

    fn read_line(&mut self) -> io::Result<String> {
        loop {
            if let Some(pos) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..pos + 2).take(pos).collect();
                return String::from_utf8(line).map_err(|_| bad("non-UTF-8 line"));
            }
            if self.buf.len() > MAX_HEAD {
                return Err(bad("line too long"));
            }
            if self.fill()? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed mid-line",
                ));
            }
        }
    }

    /// Moves up to `n` body bytes into `sink` (or `keep`).
    fn copy_body(
        &mut self,
        mut n: u64,
        keep: &mut Vec<u8>,
        sink: &mut Option<&mut dyn Write>,
    ) -> io::Result<()> {
        while n > 0 {
            if self.buf.is_empty() && self.fill()? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("closed with {n} body bytes missing"),
                ));
            }
            let take = (self.buf.len() as u64).min(n) as usize;
            emit(&self.buf[..take], keep, sink)?;
            self.buf.drain(..take);
            n -= take as u64;
        }
        Ok(())
    }

    /// Reads the next response (1xx included) to a request that was not HEAD.
    pub fn read_response(&mut self) -> io::Result<RawResponse> {
        self.read_response_inner(false, None)
    }

    /// Reads the next response to a HEAD request (never has a body).
    pub fn read_head_response(&mut self) -> io::Result<RawResponse> {
        self.read_response_inner(true, None)
    }

    /// Reads the next response, streaming the body into `sink` instead of
    /// keeping it (for large downloads); `body_len` still counts it.
    pub fn read_response_to(&mut self, sink: &mut dyn Write) -> io::Result<RawResponse> {
        self.read_response_inner(false, Some(sink))
    }

    fn read_response_inner(
        &mut self,
        head_request: bool,
        mut sink: Option<&mut dyn Write>,
    ) -> io::Result<RawResponse> {
        let status_line = loop {
            match self.read_line() {
                // Tolerate stray blank lines between responses.
                Ok(l) if l.is_empty() => continue,
                Ok(l) => break l,
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && self.buf.is_empty() => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed before a response",
                    ))
                }
                Err(e) => return Err(e),
            }
        };
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default();
        if !version.starts_with("HTTP/1.") {
            return Err(bad(format!("bad status line {status_line:?}")));
        }
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(format!("bad status line {status_line:?}")))?;
        let mut resp = RawResponse {
            status,
            reason: parts.next().unwrap_or_default().to_owned(),
            ..RawResponse::default()
        };
        let mut head_len = status_line.len();
        loop {
            let line = self.read_line()?;
            head_len += line.len() + 2;
            if head_len > MAX_HEAD {
                return Err(bad("response head too large"));
            }
            if line.is_empty() {
                break;
            }
            let (k, v) = line
                .split_once(':')
                .ok_or_else(|| bad(format!("bad header line {line:?}")))?;
            resp.headers.push((k.to_owned(), v.trim().to_owned()));
        }

        let mut keep = Vec::new();
        if head_request || (100..200).contains(&status) || status == 204 || status == 304 {
            return Ok(resp);
        }
        let chunked = resp
            .header_all("transfer-encoding")
            .iter()
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .rfind(|t| !t.is_empty())
            .is_some_and(|t| t.eq_ignore_ascii_case("chunked"));
        if chunked {
            resp.chunked = true;
            loop {
                let line = self.read_line()?;
                let size_hex = line.split(';').next().unwrap_or_default().trim();
                let size = u64::from_str_radix(size_hex, 16)
                    .map_err(|_| bad(format!("bad chunk size line {line:?}")))?;
                if size == 0 {
                    break;
                }
                self.copy_body(size, &mut keep, &mut sink)?;
                resp.body_len += size;
                if !self.read_line()?.is_empty() {
                    return Err(bad("chunk data not followed by CRLF"));
                }
            }
            loop {
                let line = self.read_line()?;
                if line.is_empty() {
                    break;
                }
                if let Some((k, v)) = line.split_once(':') {
                    resp.trailers.push((k.to_owned(), v.trim().to_owned()));
                }
            }
        } else if let Some(cl) = resp.header("content-length") {
            let n: u64 = cl
                .trim()
                .parse()
                .map_err(|_| bad(format!("bad Content-Length {cl:?}")))?;
            self.copy_body(n, &mut keep, &mut sink)?;
            resp.body_len = n;
        } else {
            resp.body_until_close = true;
            loop {
                if !self.buf.is_empty() {
                    let data = std::mem::take(&mut self.buf);
                    emit(&data, &mut keep, &mut sink)?;
                    resp.body_len += data.len() as u64;
                }
                if self.fill()? == 0 {
                    break;
                }
            }
            resp.closed = true;
        }
        resp.body = keep;
        Ok(resp)
    }

    /// Whether the server has closed (EOF or reset) within `wait`. Bytes that
    /// arrive instead are kept for the next [`Conn::read_response`].
    pub fn is_closed(&mut self, wait: Duration) -> bool {
        if self.eof {
            return true;
        }
        if !self.buf.is_empty() {
            return false;
        }
        let old = self.stream.tcp().read_timeout().ok().flatten();
        if self.stream.tcp().set_read_timeout(Some(wait)).is_err() {
            return true;
        }
        let closed = match self.fill() {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) if is_timeout(&e) => false,
            Err(_) => true,
        };
        let _ = self.stream.tcp().set_read_timeout(old);
        closed
    }
}

fn emit(data: &[u8], keep: &mut Vec<u8>, sink: &mut Option<&mut dyn Write>) -> io::Result<()> {
    match sink {
        Some(w) => w.write_all(data),
        None => {
            keep.extend_from_slice(data);
            Ok(())
        }
    }
}

/// Opens a connection, writes `bytes` exactly, reads one final response
/// (1xx responses are skipped and listed in `interim`), then reports whether
/// the server closed the connection. A write error (the server closed early)
/// is ignored when a response can still be read. The whole of `bytes` is
/// written before reading, so keep it to what socket buffers hold (a few
/// hundred KiB); for large bodies drive a [`Conn`] from two threads.
pub fn send_raw(ep: impl Into<Endpoint>, bytes: &[u8]) -> io::Result<RawResponse> {
    let mut conn = Conn::connect(ep)?;
    let write_result = conn.send(bytes);
    let head_request = bytes.starts_with(b"HEAD ");
    let mut interim = Vec::new();
    let resp = loop {
        match conn.read_response_inner(head_request, None) {
            Ok(r) if (100..200).contains(&r.status) && r.status != 101 => interim.push(r.status),
            Ok(r) => break r,
            Err(e) => return Err(write_result.err().unwrap_or(e)),
        }
    };
    finish(&mut conn, resp, interim)
}

fn finish(conn: &mut Conn, mut resp: RawResponse, interim: Vec<u16>) -> io::Result<RawResponse> {
    resp.interim = interim;
    if !resp.closed {
        let wait = if resp.announces_close() {
            CLOSE_WAIT_ANNOUNCED
        } else {
            CLOSE_WAIT
        };
        resp.closed = conn.is_closed(wait);
    }
    Ok(resp)
}

/// `Basic base64(user:pass)`.
pub fn basic_auth_value(user: &str, pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

/// Builds a request head (and body) with `Host` (`localhost` unless given),
/// `User-Agent`,
/// `Connection: close`, optional Basic credentials and `Content-Length`
/// when there is a body or the method usually has one. Headers in `extra`
/// replace the defaults of the same name.
pub fn build_request(
    method: &str,
    path: &str,
    basic_auth: Option<(&str, &str)>,
    extra: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let has = |name: &str| extra.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    if !has("host") {
        head.push_str("Host: localhost\r\n");
    }
    if !has("user-agent") {
        head.push_str("User-Agent: regproxy-tests\r\n");
    }
    if !has("connection") {
        head.push_str("Connection: close\r\n");
    }
    if let Some((u, p)) = basic_auth {
        if !has("authorization") {
            head.push_str(&format!("Authorization: {}\r\n", basic_auth_value(u, p)));
        }
    }
    if !has("content-length")
        && !has("transfer-encoding")
        && (!body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH"))
    {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// One request on a fresh connection (see [`build_request`]); `Host` is the
/// endpoint's `IP:PORT` unless `extra` sets it (the registry builds its
/// `Location` URLs from it).
pub fn request(
    ep: impl Into<Endpoint>,
    method: &str,
    path: &str,
    basic_auth: Option<(&str, &str)>,
    extra: &[(&str, &str)],
    body: &[u8],
) -> io::Result<RawResponse> {
    let ep = ep.into();
    let host = ep.addr.to_string();
    let mut headers: Vec<(&str, &str)> = Vec::with_capacity(extra.len() + 1);
    if !extra.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        headers.push(("Host", &host));
    }
    headers.extend_from_slice(extra);
    send_raw(ep, &build_request(method, path, basic_auth, &headers, body))
}

/// `GET path` on a fresh connection.
pub fn get(
    ep: impl Into<Endpoint>,
    path: &str,
    basic_auth: Option<(&str, &str)>,
    extra: &[(&str, &str)],
) -> io::Result<RawResponse> {
    request(ep, "GET", path, basic_auth, extra, b"")
}

/// Opens a blob upload session in `repo` as `user` (`POST
/// /v2/REPO/blobs/uploads/`, which must answer 202); the path and query of
/// its `Location`, where the upload goes on.
pub fn start_upload(ep: impl Into<Endpoint>, repo: &str, user: (&str, &str)) -> String {
    let ep = ep.into();
    let r = request(
        &ep,
        "POST",
        &format!("/v2/{repo}/blobs/uploads/"),
        Some(user),
        &[],
        b"",
    )
    .unwrap_or_else(|e| panic!("POST /v2/{repo}/blobs/uploads/ to {ep:?}: {e}"));
    assert_eq!(r.status, 202, "{ep:?}: {r:?} {}", r.body_text());
    path_of(
        r.header("location")
            .unwrap_or_else(|| panic!("no Location: {r:?}")),
    )
}

/// The path and query of a URL or a `Location`, absolute
/// (`https://host/v2/…?…`) or not.
pub fn path_of(location: &str) -> String {
    match location.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/".into(), |i| rest[i..].to_owned()),
        None => location.to_owned(),
    }
}

/// An error regproxy answered itself: `status`, the API version header, a
/// JSON content type, and a registry error body whose first code is `code`.
pub fn assert_registry_error(r: &RawResponse, status: u16, code: &str, what: &str) {
    assert_eq!(r.status, status, "{what}: {r:?}");
    assert_eq!(
        r.header("docker-distribution-api-version"),
        Some("registry/2.0"),
        "{what}"
    );
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "{what}: {r:?}"
    );
    let prefix = format!("{{\"errors\":[{{\"code\":\"{code}\"");
    assert!(
        r.body_text().starts_with(&prefix),
        "{what}: expected code {code} in {}",
        r.body_text()
    );
}
