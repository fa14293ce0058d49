//! One JWKS document over HTTPS: a blocking `GET` on the refresher thread
//! (never on an event loop), written by hand over `rustls::StreamOwned`
//! and the core's strict response parser (`http::head::parse_response`,
//! `http::body::ChunkedDecoder`), with our own `rustls::ClientConfig`.
//!
//! Every system call runs under what is left of one deadline (the socket
//! timeout is set again before each read and write), so a server that
//! accepts and never answers, or drips a byte at a time, costs at most the
//! timeout. Only a 200 is taken, redirects are not followed, and at most
//! `MAX_JWKS_BYTES` of body are read.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use regproxy_core::auth::oidc::MAX_JWKS_BYTES;
use regproxy_core::http::body::ChunkedDecoder;
use regproxy_core::http::head::{parse_response, Method, Parse, ResponseBody, ResponseHead};
use rustls::{ClientConfig, ClientConnection, StreamOwned};
use rustls_pki_types::ServerName;

/// Where a `jwks = "https://…"` URL points, checked once.
#[derive(Debug, Clone)]
pub(super) struct Target {
    /// The host without brackets: a DNS name or an IP literal.
    host: String,
    port: u16,
    /// `host[:port]` as the URL gives it, for the Host field.
    authority: String,
    /// Path and query, never empty; the fragment is dropped.
    path: String,
    name: ServerName<'static>,
}

/// A 200's body and its `Cache-Control: max-age`.
#[derive(Debug)]
pub(super) struct Fetched {
    pub body: Vec<u8>,
    pub max_age: Option<Duration>,
}

/// Parses an `https://host[:port][/path][?query]` URL. The config checked
/// the scheme and that it has no blanks or quotes; what goes on the wire
/// is checked again here, so no byte of it can break the request head.
pub(super) fn parse_url(url: &str) -> Result<Target, String> {
    let rest = url.strip_prefix("https://").ok_or("not an https:// URL")?;
    if !rest.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("the URL holds blanks, control or non-ASCII characters".into());
    }
    let rest = rest.split('#').next().unwrap_or_default();
    let (authority, path) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    let path = match path {
        "" => "/".to_owned(),
        p if p.starts_with('?') => format!("/{p}"),
        p => p.to_owned(),
    };
    if authority.contains('@') {
        return Err("credentials in the URL are not supported".into());
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (host, after) = v6.split_once(']').ok_or("'[' without ']'")?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or("text after ']'")?),
            };
            (host, port)
        }
        None => match authority.split_once(':') {
            Some((_, port)) if port.contains(':') => {
                return Err("an IPv6 address must be in brackets".into())
            }
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    let port = match port {
        None => 443,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| format!("bad port {p:?}"))?,
    };
    if host.is_empty() {
        return Err("no host".into());
    }
    let name = ServerName::try_from(host.to_owned())
        .map_err(|e| format!("host {host:?} is not a DNS name or IP address: {e}"))?;
    Ok(Target {
        host: host.to_owned(),
        port,
        authority: authority.to_owned(),
        path,
        name,
    })
}

/// GETs the document, all within `timeout`.
pub(super) fn get(
    target: &Target,
    tls: &Arc<ClientConfig>,
    timeout: Duration,
) -> Result<Fetched, String> {
    let deadline = Instant::now() + timeout;
    let timed_out = |e: io::Error| match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            format!("no answer within {}", secs(timeout))
        }
        _ => e.to_string(),
    };
    let addrs = resolve(target, deadline)?;
    let sock = connect(&addrs, deadline)?;
    let conn = ClientConnection::new(Arc::clone(tls), target.name.clone())
        .map_err(|e| format!("TLS client: {e}"))?;
    let mut stream = StreamOwned::new(conn, Deadlined { sock, deadline });
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: application/jwk-set+json, application/json\r\n\
         Accept-Encoding: identity\r\nUser-Agent: regproxy/{}\r\nConnection: close\r\n\r\n",
        target.path,
        target.authority,
        env!("CARGO_PKG_VERSION")
    );
    stream
        .write_all(request.as_bytes())
        .and_then(|()| stream.flush())
        .map_err(timed_out)?;
    read_response(&mut stream).map_err(|e| match e {
        ReadError::Io(e) => timed_out(e),
        ReadError::Bad(why) => why,
    })
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// Resolves a DNS name on a short-lived thread, so a resolver that hangs
/// costs this fetch its deadline and no more (the thread ends when
/// getaddrinfo gives up). IP literals need no lookup.
fn resolve(target: &Target, deadline: Instant) -> Result<Vec<SocketAddr>, String> {
    if let Ok(ip) = target.host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, target.port)]);
    }
    let (tx, rx) = mpsc::channel();
    let host_port = (target.host.clone(), target.port);
    std::thread::Builder::new()
        .name("regproxy-jwks-dns".into())
        .spawn(move || {
            let found = host_port.to_socket_addrs().map(Iterator::collect::<Vec<_>>);
            let _ = tx.send(found);
        })
        .map_err(|e| format!("cannot start a resolver thread: {e}"))?;
    match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        Ok(Ok(addrs)) if !addrs.is_empty() => Ok(addrs),
        Ok(Ok(_)) => Err(format!("{} resolves to no address", target.host)),
        Ok(Err(e)) => Err(format!("cannot resolve {}: {e}", target.host)),
        Err(_) => Err(format!("resolving {} timed out", target.host)),
    }
}

fn connect(addrs: &[SocketAddr], deadline: Instant) -> Result<TcpStream, String> {
    let mut last = String::from("no address to connect to");
    for addr in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("{last}; timed out"));
        }
        match TcpStream::connect_timeout(addr, left) {
            Ok(sock) => return Ok(sock),
            Err(e) => last = format!("connect to {addr}: {e}"),
        }
    }
    Err(last)
}

/// A socket whose every read and write waits at most until `deadline`.
struct Deadlined {
    sock: TcpStream,
    deadline: Instant,
}

impl Deadlined {
    fn left(&self) -> io::Result<Duration> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        Ok(left)
    }
}

impl Read for Deadlined {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.sock.set_read_timeout(Some(self.left()?))?;
        self.sock.read(buf)
    }
}

impl Write for Deadlined {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.sock.set_write_timeout(Some(self.left()?))?;
        self.sock.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.sock.flush()
    }
}

enum ReadError {
    Io(io::Error),
    Bad(String),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        ReadError::Io(e)
    }
}

impl From<String> for ReadError {
    fn from(why: String) -> Self {
        ReadError::Bad(why)
    }
}

fn read_response(stream: &mut impl Read) -> Result<Fetched, ReadError> {
    let mut buf = Vec::with_capacity(16 * 1024);
    let (head, len) = loop {
        match parse_response(&buf, &Method::Get) {
            Ok(Parse::Complete { head, len }) => break (head, len),
            Ok(Parse::Partial) => {}
            Err(e) => return Err(format!("unreadable response: {e}").into()),
        }
        if read_more(stream, &mut buf)? == 0 {
            return Err(
                String::from("the connection closed before the response head ended").into(),
            );
        }
    };
    let rest = buf.split_off(len);
    check_head(&head)?;
    let body = match head.body {
        ResponseBody::None => Vec::new(),
        ResponseBody::Length(n) => read_length(stream, rest, n)?,
        ResponseBody::Chunked => read_chunked(stream, rest)?,
        ResponseBody::CloseDelimited => read_to_close(stream, rest)?,
    };
    Ok(Fetched {
        body,
        max_age: max_age(&head),
    })
}

/// Only a plain 200 is a JWKS: a redirect is not followed (the operator
/// configures the final URL), and an encoding we did not ask for is refused.
fn check_head(head: &ResponseHead) -> Result<(), String> {
    if head.status != 200 {
        let note = if (300..400).contains(&head.status) {
            " (redirects are not followed; configure the final URL)"
        } else {
            ""
        };
        return Err(format!(
            "HTTP {} {}{note}, only 200 is accepted",
            head.status,
            head.reason()
        ));
    }
    if let Some(coding) = head.header("content-encoding") {
        if !coding.eq_ignore_ascii_case(b"identity") {
            return Err(format!(
                "Content-Encoding {:?} (identity was asked for)",
                String::from_utf8_lossy(coding)
            ));
        }
    }
    Ok(())
}

fn too_large() -> String {
    format!("the body is larger than {MAX_JWKS_BYTES} bytes")
}

/// Appends what one read gives; 0 at the end of the stream.
fn read_more(stream: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<usize> {
    let mut chunk = [0u8; 16 * 1024];
    let n = stream.read(&mut chunk)?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n)
}

fn read_length(stream: &mut impl Read, mut body: Vec<u8>, n: u64) -> Result<Vec<u8>, ReadError> {
    let n = usize::try_from(n)
        .ok()
        .filter(|&n| n <= MAX_JWKS_BYTES)
        .ok_or_else(too_large)?;
    while body.len() < n {
        if read_more(stream, &mut body)? == 0 {
            return Err(format!(
                "the connection closed after {} of {n} body bytes",
                body.len()
            )
            .into());
        }
    }
    body.truncate(n);
    Ok(body)
}

fn read_chunked(stream: &mut impl Read, mut pending: Vec<u8>) -> Result<Vec<u8>, ReadError> {
    let mut decoder = ChunkedDecoder::new();
    let mut body = Vec::new();
    loop {
        let progress = decoder
            .decode(&pending)
            .map_err(|e| format!("bad chunked body: {e}"))?;
        let got_data = progress.data.is_some();
        if let Some(data) = progress.data {
            body.extend_from_slice(&pending[data]);
            if body.len() > MAX_JWKS_BYTES {
                return Err(too_large().into());
            }
        }
        pending.drain(..progress.consumed);
        if progress.done {
            return Ok(body);
        }
        // Without data the decoder wants more bytes; after data, more
        // may already be pending.
        let starved = !got_data || pending.is_empty();
        if starved && read_more(stream, &mut pending)? == 0 {
            return Err(String::from("the connection closed inside the chunked body").into());
        }
    }
}

/// A body without length runs to the close; rustls reports a close without
/// close_notify as an error, so a truncated document is never taken.
fn read_to_close(stream: &mut impl Read, mut body: Vec<u8>) -> Result<Vec<u8>, ReadError> {
    while read_more(stream, &mut body)? > 0 {
        if body.len() > MAX_JWKS_BYTES {
            return Err(too_large().into());
        }
    }
    Ok(body)
}

/// `Cache-Control: max-age=N`, if the server gave one.
fn max_age(head: &ResponseHead) -> Option<Duration> {
    let value = std::str::from_utf8(head.header("cache-control")?).ok()?;
    value.split(',').find_map(|d| {
        let (name, secs) = d.trim().split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("max-age") {
            return None;
        }
        let secs = secs.trim().trim_matches('"').parse::<u64>().ok()?;
        Some(Duration::from_secs(secs))
    })
}

#[cfg(test)]
impl Target {
    /// (host, port, Host field, path), for the tests.
    pub(super) fn parts(&self) -> (&str, u16, &str, &str) {
        (&self.host, self.port, &self.authority, &self.path)
    }
}
