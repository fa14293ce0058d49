//! A fake origin server for the faults the real registry cannot produce on
//! demand: refusing, hanging, garbage, a close or reset mid-body, closing a
//! keep-alive connection at the worst moment, slow responses.
//!
//! [`Origin::start`] listens on `127.0.0.1:0` on a thread of its own and
//! serves each connection on another thread: it reads one request at a time
//! (head, then a Content-Length or chunked body), records it, and runs the
//! [`Step`]s the test's handler returns for it, in order. After the steps
//! the connection waits for the next request, unless a step ended it.
//! [`Origin::silent`] accepts connections and never reads or answers.
//!
//! Every wait here is bounded: threads poll a stop flag set on drop, and a
//! connection that sees nothing for [`IDLE_LIMIT`] is closed.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

// regbench's fake origin writes the same status lines: one table for both.
use regproxy_core::http::reason::reason;

/// Longest a connection waits for a request, or hangs, before closing.
pub const IDLE_LIMIT: Duration = Duration::from_secs(120);
/// Longest the origin lives, whatever the test does.
const LIFETIME: Duration = Duration::from_secs(900);
/// How often blocked threads look at the stop flag.
const POLL: Duration = Duration::from_millis(20);
/// Largest request head the origin reads.
const MAX_HEAD: usize = 64 * 1024;

/// One request as the origin received it.
#[derive(Debug, Clone)]
pub struct Request {
    /// Which connection (0-based, in accept order) carried it.
    pub conn: usize,
    /// Its position on that connection (0 for the first request).
    pub index: usize,
    pub method: String,
    pub target: String,
    /// `HTTP/1.1` or `HTTP/1.0`.
    pub version: String,
    /// The raw head, request line to the final empty line.
    pub head: String,
    /// Field lines in order, names as sent, values trimmed.
    pub headers: Vec<(String, String)>,
    /// The decoded body.
    pub body: Vec<u8>,
    /// The body as it came, chunked framing included.
    pub raw_body: Vec<u8>,
    /// The body came chunked.
    pub chunked: bool,
}

impl Request {
    /// First value of `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        super::http::find_header(&self.headers, name)
    }

    /// Every value of `name` (case-insensitive).
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        super::http::find_headers(&self.headers, name)
    }
}

/// What the origin does after reading a request.
#[derive(Debug, Clone)]
pub enum Step {
    /// Writes these bytes.
    Write(Vec<u8>),
    /// Waits (cut short if the origin is dropped).
    Sleep(Duration),
    /// Closes the connection with a FIN.
    Close,
    /// Closes the connection with a RST (`SO_LINGER` 0).
    Reset,
    /// Keeps the connection open, reading nothing, until the origin is
    /// dropped or [`IDLE_LIMIT`] passes.
    Hang,
    /// Waits until the test sets the flag (or the origin is dropped, or
    /// [`IDLE_LIMIT`] passes), then goes on with the next step.
    Await(Arc<AtomicBool>),
}

type Handler = dyn Fn(&Request) -> Vec<Step> + Send + Sync;

#[derive(Default)]
struct State {
    requests: Mutex<Vec<Request>>,
    accepted: AtomicUsize,
    closed: AtomicUsize,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

pub struct Origin {
    addr: SocketAddr,
    state: Arc<State>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl Origin {
    /// Serves every request with what `handler` returns for it.
    pub fn start(handler: impl Fn(&Request) -> Vec<Step> + Send + Sync + 'static) -> Origin {
        Self::spawn(Some(Arc::new(handler)))
    }

    /// Accepts connections and never reads from or writes to them.
    pub fn silent() -> Origin {
        Self::spawn(None)
    }

    fn spawn(handler: Option<Arc<Handler>>) -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fake origin");
        let addr = listener.local_addr().expect("fake origin address");
        listener
            .set_nonblocking(true)
            .expect("non-blocking fake origin listener");
        let state = Arc::new(State::default());
        let stop = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let (state, stop) = (state.clone(), stop.clone());
            std::thread::Builder::new()
                .name("fake-origin".into())
                .spawn(move || accept_loop(&listener, &state, &stop, handler.as_ref()))
                .expect("spawn fake origin")
        };
        Origin {
            addr,
            state,
            stop,
            acceptor: Some(acceptor),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request read so far, in the order they were read.
    pub fn requests(&self) -> Vec<Request> {
        self.state
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.accepted.load(Ordering::SeqCst)
    }

    /// Connections the origin has finished with (closed, reset, or seen closed).
    pub fn closed(&self) -> usize {
        self.state.closed.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` requests were read; returns them all.
    pub fn wait_requests(&self, n: usize, timeout: Duration) -> Vec<Request> {
        super::wait_for(timeout, || {
            let r = self.requests();
            (r.len() >= n).then_some(r)
        })
        .unwrap_or_else(|| self.requests())
    }

    /// Waits until at least `n` connections were accepted; returns whether.
    pub fn wait_connections(&self, n: usize, timeout: Duration) -> bool {
        super::wait_for(timeout, || (self.connections() >= n).then_some(())).is_some()
    }

    /// Waits until at least `n` connections are finished; returns whether.
    pub fn wait_closed(&self, n: usize, timeout: Duration) -> bool {
        super::wait_for(timeout, || (self.closed() >= n).then_some(())).is_some()
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
        let threads =
            std::mem::take(&mut *self.state.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for t in threads {
            let _ = t.join();
        }
    }
}

fn accept_loop(
    listener: &TcpListener,
    state: &Arc<State>,
    stop: &Arc<AtomicBool>,
    handler: Option<&Arc<Handler>>,
) {
    let deadline = Instant::now() + LIFETIME;
    while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(_) => {
                // The non-blocking accept's poll interval, so the loop sees
                // `stop` and the lifetime deadline.
                std::thread::sleep(POLL);
                continue;
            }
        };
        let id = state.accepted.fetch_add(1, Ordering::SeqCst);
        let (state2, stop2, handler) = (state.clone(), stop.clone(), handler.cloned());
        let spawned = std::thread::Builder::new()
            .name(format!("fake-origin-{id}"))
            .spawn(move || {
                let _ = serve(stream, id, &state2, &stop2, handler.as_deref());
                state2.closed.fetch_add(1, Ordering::SeqCst);
            });
        if let Ok(t) = spawned {
            state
                .threads
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(t);
        }
    }
}

/// Sleeps `d` in short slices; false if the origin was stopped meanwhile.
fn pause(d: Duration, stop: &AtomicBool) -> bool {
    let deadline = Instant::now() + d;
    loop {
        if stop.load(Ordering::SeqCst) {
            return false;
        }
        let now = Instant::now();
        if now >= deadline {
            return true;
        }
        // Not synchronisation: a scripted `Step::Sleep`, cut in slices.
        std::thread::sleep(POLL.min(deadline - now));
    }
}

fn serve(
    mut stream: TcpStream,
    conn: usize,
    state: &State,
    stop: &AtomicBool,
    handler: Option<&Handler>,
) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(POLL * 5))?;
    stream.set_write_timeout(Some(Duration::from_secs(30)))?;
    let Some(handler) = handler else {
        pause(IDLE_LIMIT, stop);
        return Ok(());
    };
    let mut reader = Reader {
        buf: Vec::new(),
        eof: false,
    };
    for index in 0.. {
        let mut req = match reader.read_request(&mut stream, stop) {
            Ok(Some(req)) => req,
            Ok(None) => return Ok(()),
            // Malformed framing: say what was wrong, so the test's client
            // sees it, and close.
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                let msg = format!("fake origin: {e}");
                let mut out = head(400, &[("Connection", "close")]);
                out.truncate(out.len() - 2);
                out.extend_from_slice(
                    format!("Content-Length: {}\r\n\r\n{msg}", msg.len()).as_bytes(),
                );
                let _ = stream.write_all(&out);
                let _ = stream.shutdown(Shutdown::Write);
                pause(Duration::from_millis(200), stop);
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        req.conn = conn;
        req.index = index;
        state
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(req.clone());
        for step in handler(&req) {
            match step {
                Step::Write(bytes) => stream.write_all(&bytes)?,
                Step::Sleep(d) => {
                    if !pause(d, stop) {
                        return Ok(());
                    }
                }
                Step::Close => {
                    let _ = stream.shutdown(Shutdown::Both);
                    return Ok(());
                }
                Step::Reset => {
                    socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO))?;
                    drop(stream);
                    return Ok(());
                }
                Step::Hang => {
                    pause(IDLE_LIMIT, stop);
                    return Ok(());
                }
                Step::Await(gate) => {
                    let deadline = Instant::now() + IDLE_LIMIT;
                    while !gate.load(Ordering::SeqCst) {
                        if Instant::now() >= deadline || !pause(POLL, stop) {
                            return Ok(());
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// Read-ahead over one origin connection.
struct Reader {
    buf: Vec<u8>,
    eof: bool,
}

impl Reader {
    /// Reads more bytes; false at end of stream, when stopped, or when idle
    /// for [`IDLE_LIMIT`].
    fn fill(&mut self, stream: &mut TcpStream, stop: &AtomicBool) -> io::Result<bool> {
        let deadline = Instant::now() + IDLE_LIMIT;
        let mut chunk = [0u8; 64 * 1024];
        while !self.eof && !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
            match stream.read(&mut chunk) {
                Ok(0) => self.eof = true,
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(true);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => self.eof = true,
            }
        }
        Ok(false)
    }

    /// The next request; `None` when the peer closed between requests.
    fn read_request(
        &mut self,
        stream: &mut TcpStream,
        stop: &AtomicBool,
    ) -> io::Result<Option<Request>> {
        let head_len = loop {
            if let Some(pos) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break pos + 4;
            }
            if self.buf.len() > MAX_HEAD {
                return Err(bad("request head too large"));
            }
            if !self.fill(stream, stop)? {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(bad("closed inside a request head"))
                };
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..head_len]).into_owned();
        self.buf.drain(..head_len);
        let mut lines = head.split("\r\n");
        let request_line = lines.next().unwrap_or_default();
        let mut parts = request_line.split(' ');
        let mut req = Request {
            conn: 0,
            index: 0,
            method: parts.next().unwrap_or_default().to_owned(),
            target: parts.next().unwrap_or_default().to_owned(),
            version: parts.next().unwrap_or_default().to_owned(),
            head: head.clone(),
            headers: Vec::new(),
            body: Vec::new(),
            raw_body: Vec::new(),
            chunked: false,
        };
        for line in lines.filter(|l| !l.is_empty()) {
            if let Some((k, v)) = line.split_once(':') {
                req.headers.push((k.to_owned(), v.trim().to_owned()));
            }
        }
        req.chunked = req
            .header("transfer-encoding")
            .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
        if req.chunked {
            loop {
                if let Some((body, used)) = decode_chunked(&self.buf)? {
                    req.body = body;
                    req.raw_body = self.buf.drain(..used).collect();
                    break;
                }
                if !self.fill(stream, stop)? {
                    return Err(bad("closed inside a chunked body"));
                }
            }
        } else if let Some(cl) = req.header("content-length") {
            let n: usize = cl.parse().map_err(|_| bad("bad Content-Length"))?;
            while self.buf.len() < n {
                if !self.fill(stream, stop)? {
                    return Err(bad("closed inside a body"));
                }
            }
            req.body = self.buf.drain(..n).collect();
            req.raw_body.clone_from(&req.body);
        }
        Ok(Some(req))
    }
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_owned())
}

/// A whole chunked body at the start of `buf`: its data and the bytes it
/// took, trailer included; `None` while incomplete.
fn decode_chunked(buf: &[u8]) -> io::Result<Option<(Vec<u8>, usize)>> {
    let line_end = |from: usize| -> Option<usize> {
        buf.get(from..)?
            .windows(2)
            .position(|w| w == b"\r\n")
            .map(|p| from + p)
    };
    let mut body = Vec::new();
    let mut pos = 0;
    loop {
        let Some(end) = line_end(pos) else {
            return Ok(None);
        };
        let line = std::str::from_utf8(&buf[pos..end]).map_err(|_| bad("bad chunk line"))?;
        let size_hex = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| bad(&format!("bad chunk size line {line:?}")))?;
        pos = end + 2;
        if size == 0 {
            // Trailer fields until the empty line.
            loop {
                let Some(end) = line_end(pos) else {
                    return Ok(None);
                };
                let empty = end == pos;
                pos = end + 2;
                if empty {
                    return Ok(Some((body, pos)));
                }
            }
        }
        if buf.len() < pos + size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&buf[pos..pos + size]);
        if &buf[pos + size..pos + size + 2] != b"\r\n" {
            return Err(bad("chunk data not followed by CRLF"));
        }
        pos += size + 2;
    }
}

/// A response head with exactly the given fields (no framing added).
pub fn head(status: u16, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// A complete response with `Content-Length` and the given fields.
pub fn response(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let len = body.len().to_string();
    let mut all = headers.to_vec();
    all.push(("Content-Length", &len));
    let mut out = head(status, &all);
    out.extend_from_slice(body);
    out
}

/// A chunked body: one chunk per piece (with a chunk extension on every
/// other one), the last-chunk, then `trailers`.
pub fn chunked_body(pieces: &[&[u8]], trailers: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, piece) in pieces.iter().enumerate() {
        if piece.is_empty() {
            continue;
        }
        if i % 2 == 0 {
            out.extend_from_slice(format!("{:x};piece={i}\r\n", piece.len()).as_bytes());
        } else {
            out.extend_from_slice(format!("{:X}\r\n", piece.len()).as_bytes());
        }
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0;end=\"yes\"\r\n");
    for (k, v) in trailers {
        out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out
}
