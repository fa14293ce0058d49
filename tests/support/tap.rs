//! A transparent TCP relay that notes how each request it carries is
//! framed, so a test can say how a real client uploads (one PUT with a
//! `Content-Length`, chunked PATCH bodies, ...) without changing a byte.
//!
//! Put it in front of a plain-HTTP listener: the client connects to the
//! tap, the tap to the target. Bytes are relayed untouched both ways; the
//! client-to-target direction is also fed to [`Scanner`], a small state
//! machine that finds request heads and skips bodies by their framing
//! (RFC 9112 §6: chunked wins, else `Content-Length`, else no body).
//! Every thread polls a stop flag set on drop and gives up after
//! [`IDLE_LIMIT`] without traffic.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A connection with no traffic either way for this long is closed.
pub const IDLE_LIMIT: Duration = Duration::from_secs(120);
const POLL: Duration = Duration::from_millis(50);
/// Longest request head or chunk-size line the scanner keeps.
const MAX_LINE: usize = 64 * 1024;

/// How a request's body was framed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Framing {
    /// Neither header: no body.
    None,
    ContentLength(u64),
    /// `Transfer-Encoding: chunked`, with the number of data chunks and
    /// their total size.
    Chunked {
        chunks: u64,
        bytes: u64,
    },
}

/// One request as the tap saw it go by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub framing: Framing,
    /// `Expect: 100-continue` was sent.
    pub expect_continue: bool,
}

impl Seen {
    /// Body bytes, whatever the framing.
    pub fn body_bytes(&self) -> u64 {
        match self.framing {
            Framing::None => 0,
            Framing::ContentLength(n) => n,
            Framing::Chunked { bytes, .. } => bytes,
        }
    }
}

#[derive(Debug)]
enum State {
    Head,
    Fixed(u64),
    ChunkSize,
    ChunkData(u64),
    ChunkDataEnd(u8),
    Trailers,
    /// Something the scanner does not follow; it stops noting.
    Lost,
}

/// Follows one connection's request stream; pure, fed any split of bytes.
#[derive(Debug)]
pub struct Scanner {
    state: State,
    line: Vec<u8>,
    current: Option<Seen>,
    pub seen: Vec<Seen>,
}

impl Default for Scanner {
    fn default() -> Self {
        Scanner {
            state: State::Head,
            line: Vec::new(),
            current: None,
            seen: Vec::new(),
        }
    }
}

impl Scanner {
    pub fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            match self.state {
                State::Lost => return,
                State::Head => {
                    let (taken, done) = take_until(&mut self.line, data, b"\r\n\r\n");
                    data = &data[taken..];
                    if done {
                        self.start_request();
                    } else if self.line.len() > MAX_LINE {
                        self.state = State::Lost;
                    }
                }
                State::Fixed(n) => {
                    let take = (data.len() as u64).min(n);
                    data = &data[take as usize..];
                    self.state = if n == take {
                        self.finish();
                        State::Head
                    } else {
                        State::Fixed(n - take)
                    };
                }
                State::ChunkSize => {
                    let (taken, done) = take_until(&mut self.line, data, b"\r\n");
                    data = &data[taken..];
                    if done {
                        self.chunk_size_line();
                    } else if self.line.len() > MAX_LINE {
                        self.state = State::Lost;
                    }
                }
                State::ChunkData(n) => {
                    let take = (data.len() as u64).min(n);
                    data = &data[take as usize..];
                    self.state = if n == take {
                        State::ChunkDataEnd(2)
                    } else {
                        State::ChunkData(n - take)
                    };
                }
                State::ChunkDataEnd(left) => {
                    let take = data.len().min(usize::from(left));
                    data = &data[take..];
                    self.state = if take == usize::from(left) {
                        State::ChunkSize
                    } else {
                        State::ChunkDataEnd(left - take as u8)
                    };
                }
                State::Trailers => {
                    let (taken, done) = take_until(&mut self.line, data, b"\r\n");
                    data = &data[taken..];
                    if done {
                        let empty = self.line == b"\r\n";
                        self.line.clear();
                        if empty {
                            self.finish();
                            self.state = State::Head;
                        }
                    }
                }
            }
        }
    }

    fn start_request(&mut self) {
        let head = std::mem::take(&mut self.line);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        if !matches!(req.parse(&head), Ok(httparse::Status::Complete(_))) {
            self.state = State::Lost;
            return;
        }
        let value = |name: &str| {
            req.headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| String::from_utf8_lossy(h.value).trim().to_ascii_lowercase())
        };
        let chunked = value("transfer-encoding").is_some_and(|v| v.ends_with("chunked"));
        let length = value("content-length").and_then(|v| v.parse::<u64>().ok());
        let expect_continue = value("expect").is_some_and(|v| v == "100-continue");
        let mut seen = Seen {
            method: req.method.unwrap_or("").to_owned(),
            target: req.path.unwrap_or("").to_owned(),
            framing: Framing::None,
            expect_continue,
        };
        self.state = if chunked {
            seen.framing = Framing::Chunked {
                chunks: 0,
                bytes: 0,
            };
            State::ChunkSize
        } else if let Some(n) = length.filter(|&n| n > 0) {
            seen.framing = Framing::ContentLength(n);
            State::Fixed(n)
        } else {
            if length == Some(0) {
                seen.framing = Framing::ContentLength(0);
            }
            State::Head
        };
        self.current = Some(seen);
        if matches!(self.state, State::Head) {
            self.finish();
        }
    }

    fn chunk_size_line(&mut self) {
        let line = std::mem::take(&mut self.line);
        let text = String::from_utf8_lossy(&line);
        let hex = text.trim_end().split(';').next().unwrap_or("").trim();
        let Ok(size) = u64::from_str_radix(hex, 16) else {
            self.state = State::Lost;
            return;
        };
        if size == 0 {
            self.state = State::Trailers;
            return;
        }
        if let Some(Seen {
            framing: Framing::Chunked { chunks, bytes },
            ..
        }) = self.current.as_mut()
        {
            *chunks += 1;
            *bytes += size;
        }
        self.state = State::ChunkData(size);
    }

    fn finish(&mut self) {
        if let Some(seen) = self.current.take() {
            self.seen.push(seen);
        }
    }
}

/// Appends bytes of `data` to `line` up to and including `end`; returns
/// how many bytes were taken and whether `end` was reached.
fn take_until(line: &mut Vec<u8>, data: &[u8], end: &[u8]) -> (usize, bool) {
    for (i, &b) in data.iter().enumerate() {
        line.push(b);
        if line.ends_with(end) {
            return (i + 1, true);
        }
    }
    (data.len(), false)
}

/// How the biggest upload the tap saw was framed, e.g. `POST, then PATCH
/// chunked (2048 chunks, 67.1 MB), then PUT without body`: the requests of
/// that upload session (same upload id), in order. Panics unless at least
/// `min` body bytes went by in one session.
pub fn describe_upload(seen: &[Seen], min: u64) -> String {
    let uploads: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.target.contains("/blobs/uploads/"))
        .collect();
    let session = |s: &Seen| -> String {
        let rest = s.target.split("/blobs/uploads/").nth(1).unwrap_or("");
        rest.split('?').next().unwrap_or("").to_owned()
    };
    let biggest = uploads
        .iter()
        .max_by_key(|s| s.body_bytes())
        .unwrap_or_else(|| panic!("the tap saw no upload: {seen:#?}"));
    let id = session(biggest);
    let steps: Vec<&&Seen> = uploads
        .iter()
        .filter(|s| !id.is_empty() && session(s) == id)
        .collect();
    let total: u64 = steps.iter().map(|s| s.body_bytes()).sum();
    assert!(
        total >= min,
        "the biggest upload carried {total} bytes, want at least {min}: {uploads:#?}"
    );
    // The POST that opened the session has no id in its target; a POST
    // that carries the body itself (monolithic upload) is the session.
    let opened_by_post = uploads
        .iter()
        .any(|s| s.method == "POST" && session(s).is_empty());
    let mut parts = Vec::new();
    if opened_by_post && biggest.method != "POST" {
        parts.push("POST".to_owned());
    }
    for s in steps {
        let framing = match &s.framing {
            Framing::None => "without body".to_owned(),
            Framing::ContentLength(0) => "Content-Length: 0".to_owned(),
            Framing::ContentLength(n) => format!("Content-Length {:.1} MB", *n as f64 / 1e6),
            Framing::Chunked { chunks, bytes } => {
                format!("chunked ({chunks} chunks, {:.1} MB)", *bytes as f64 / 1e6)
            }
        };
        let expect = if s.expect_continue {
            " + Expect: 100-continue"
        } else {
            ""
        };
        parts.push(format!("{} {framing}{expect}", s.method));
    }
    parts.join(", then ")
}

/// The relay; see the module doc.
pub struct Tap {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Tap {
    /// Listens on `127.0.0.1:0` and relays every connection to `target`.
    pub fn start(target: SocketAddr) -> Tap {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind tap");
        listener.set_nonblocking(true).expect("nonblocking tap");
        let addr = listener.local_addr().expect("tap addr");
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (stop2, seen2) = (stop.clone(), seen.clone());
        std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let (stop3, seen3) = (stop2.clone(), seen2.clone());
                        std::thread::spawn(move || relay(client, target, &stop3, &seen3));
                    }
                    // The non-blocking accept's poll interval, so the loop
                    // sees `stop` (a blocking accept would never return).
                    Err(_) => std::thread::sleep(POLL),
                }
            }
        });
        Tap { addr, stop, seen }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request seen so far (requests of one connection in order).
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Forgets what was seen so far.
    pub fn clear(&self) {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn relay(client: TcpStream, target: SocketAddr, stop: &AtomicBool, seen: &Mutex<Vec<Seen>>) {
    let Ok(server) = TcpStream::connect_timeout(&target, Duration::from_secs(5)) else {
        return;
    };
    let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    for s in [&client, &server] {
        let _ = s.set_read_timeout(Some(POLL));
        let _ = s.set_nodelay(true);
    }
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut scanner = Scanner::default();
            pump(&client, &s2, stop, |bytes| {
                let before = scanner.seen.len();
                scanner.feed(bytes);
                if scanner.seen.len() > before {
                    seen.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .extend(scanner.seen.drain(..));
                }
            });
        });
        pump(&server, &c2, stop, |_| {});
    });
}

/// Copies `from` to `to` until EOF, an error, the stop flag or
/// [`IDLE_LIMIT`] of silence; then half-closes `to`.
fn pump(mut from: &TcpStream, mut to: &TcpStream, stop: &AtomicBool, mut note: impl FnMut(&[u8])) {
    let mut buf = vec![0u8; 256 * 1024];
    let mut last = Instant::now();
    while !stop.load(Ordering::Relaxed) && last.elapsed() < IDLE_LIMIT {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                note(&buf[..n]);
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
                last = Instant::now();
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
