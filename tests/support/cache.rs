//! The edge cache's end-to-end pieces: a plain regproxy with a `[cache]`
//! table, an admin port and the JSON access log ([`Edge`]); blobs pushed
//! straight to the real registry ([`push_blob`]) and its blob `GET`s
//! counted from its access log ([`blob_gets`]); the files under the cache
//! folder; a fake origin that serves blobs as a registry does
//! ([`serve_blob`]); a body read a few KiB at a time ([`SlowRead`]); a tiny
//! tmpfs for a full disk ([`Tmpfs`]).

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::http::{self, Endpoint, RawResponse};
use super::origin::{self, Request, Step};
use super::proxy::Proxy;
use super::registry::Registry;
use super::skopeo::{fresh_seed, sha256_digest, RandomStream, Sha256};
use super::tls::Tls;

/// The one user of every edge: no rules, so it may pull any repository.
pub const USER: (&str, &str) = ("puller", "puller-pw");
/// How long a test waits for a log line, a metric or a file to show.
pub const WAIT: Duration = Duration::from_secs(15);
const MIB: u64 = 1 << 20;

/// The `[cache]` table and the rest of an [`Edge`]'s config.
#[derive(Debug, Clone)]
pub struct CacheOpts {
    /// `false`: no `[cache]` table at all.
    pub cache: bool,
    /// `None`: `DIR/cache` in the edge's temp dir.
    pub dir: Option<PathBuf>,
    pub max_size: String,
    pub confirm_ttl: String,
    pub stale_if_error: String,
    /// `None`: regproxy's default (one per core).
    pub workers: Option<usize>,
    /// Terminate TLS (a test CA, `localhost`).
    pub tls: bool,
    /// More top-level keys (`driver = "epoll"`).
    pub top: &'static str,
}

impl Default for CacheOpts {
    fn default() -> Self {
        CacheOpts {
            cache: true,
            dir: None,
            max_size: "256MiB".into(),
            confirm_ttl: "0s".into(),
            stale_if_error: "0s".into(),
            workers: None,
            tls: false,
            top: "",
        }
    }
}

/// One line of the JSON access log, the fields the cache tests read.
#[derive(Debug, Clone)]
pub struct LogLine {
    pub method: String,
    pub path: String,
    pub status: u64,
    /// The `cache` field; `None` when absent.
    pub cache: Option<String>,
    pub raw: serde_json::Value,
}

/// regproxy with a `[cache]` in front of `upstream` (the real registry or a
/// fake origin), with its users, certificates and cache folder in one
/// temporary directory.
pub struct Edge {
    pub dir: tempfile::TempDir,
    pub proxy: Proxy,
    pub cache_dir: PathBuf,
    pub tls: Option<Tls>,
    config: String,
    /// The htpasswd file's text, written beside each run's config.
    users: String,
    starts: usize,
}

/// regproxy with `config` in `workdir`, its `users` file beside it.
fn start_in(config: &str, users: &str, workdir: &Path) -> Proxy {
    std::fs::create_dir_all(workdir).expect("create proxy workdir");
    std::fs::write(workdir.join("users"), users).expect("write htpasswd file");
    Proxy::start(config, workdir)
}

impl Edge {
    pub fn start(upstream: SocketAddr, opts: &CacheOpts) -> Edge {
        let dir = tempfile::tempdir().expect("edge temp dir");
        let users = super::htpasswd_text(&[USER]);
        let cache_dir = opts.dir.clone().unwrap_or_else(|| dir.path().join("cache"));
        let tls = opts.tls.then(|| Tls::generate(&dir.path().join("tls")));
        let config = config(upstream, opts, &cache_dir, tls.as_ref());
        let proxy = start_in(&config, &users, &dir.path().join("proxy-0"));
        Edge {
            dir,
            proxy,
            cache_dir,
            tls,
            config,
            users,
            starts: 1,
        }
    }

    /// Starts regproxy again with the same config and cache folder (after
    /// the test killed it): a new work dir, so the logs are the new run's.
    pub fn restart(&mut self) {
        self.proxy.kill();
        let workdir = self.dir.path().join(format!("proxy-{}", self.starts));
        self.starts += 1;
        self.proxy = start_in(&self.config, &self.users, &workdir);
    }

    /// Where a client reaches it (TLS verified against the test CA if on).
    pub fn ep(&self) -> Endpoint {
        match &self.tls {
            Some(tls) => tls.endpoint(self.proxy.addr()),
            None => Endpoint::plain(self.proxy.addr()),
        }
    }

    /// `method path` as [`USER`], on a fresh connection.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        extra: &[(&str, &str)],
    ) -> io::Result<RawResponse> {
        http::request(self.ep(), method, path, Some(USER), extra, b"")
    }

    /// `GET /v2/REPO/blobs/DIGEST` as [`USER`].
    pub fn get_blob(&self, repo: &str, digest: &str) -> io::Result<RawResponse> {
        self.call("GET", &blob_path(repo, digest), &[])
    }

    /// `regproxy_cache_NAME` from `/metrics` (`hits_total`, `bytes`, ...).
    pub fn metric(&self, name: &str) -> u64 {
        self.proxy.metric(&format!("regproxy_cache_{name}"))
    }

    /// Waits until `regproxy_cache_NAME` is at least `n`; returns its value.
    pub fn wait_metric(&self, name: &str, n: u64) -> u64 {
        super::wait_for(WAIT, || {
            let v = self.metric(name);
            (v >= n).then_some(v)
        })
        .unwrap_or_else(|| self.metric(name))
    }

    /// Waits until `n` fills are committed. A fill's client has its last
    /// byte before the file is synced and renamed into place: a request
    /// sent in between follows the fill (`wait`) rather than hitting.
    pub fn wait_fills(&self, n: u64) {
        let got = self.wait_metric("fills_total", n);
        assert!(got >= n, "{got} fills committed, want {n}");
    }

    /// Every access-log line so far.
    pub fn log(&self) -> Vec<LogLine> {
        parse_log(&self.proxy.access_log_text())
    }

    /// The access-log lines for `path`, once there are at least `n` of them
    /// (the log is flushed every 200 ms), or all there are after [`WAIT`].
    pub fn wait_log(&self, path: &str, n: usize) -> Vec<LogLine> {
        let pick =
            || -> Vec<LogLine> { self.log().into_iter().filter(|l| l.path == path).collect() };
        super::wait_for(WAIT, || {
            let lines = pick();
            (lines.len() >= n).then_some(lines)
        })
        .unwrap_or_else(pick)
    }

    /// The `cache` fields of the lines for `path` once there are `n`,
    /// sorted: each worker flushes its own log lines, so their order in the
    /// file is not the order of the requests.
    pub fn outcomes(&self, path: &str, n: usize) -> Vec<Option<String>> {
        let mut all: Vec<_> = self
            .wait_log(path, n)
            .into_iter()
            .map(|l| l.cache)
            .collect();
        all.sort();
        all
    }

    /// Files under `blobs/` (whole, checked entries).
    pub fn blob_files(&self) -> Vec<PathBuf> {
        files_under(&self.cache_dir.join("blobs"))
    }

    /// Files under `tmp/` (fills in progress, or leftovers).
    pub fn tmp_files(&self) -> Vec<PathBuf> {
        files_under(&self.cache_dir.join("tmp"))
    }

    /// The cache file of `digest` (`blobs/sha256/ab/<hex>`).
    pub fn entry_path(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.cache_dir
            .join("blobs/sha256")
            .join(&hex[..2])
            .join(hex)
    }
}

fn config(upstream: SocketAddr, opts: &CacheOpts, cache_dir: &Path, tls: Option<&Tls>) -> String {
    let mut top = format!("{}\n", opts.top);
    if let Some(n) = opts.workers {
        top.push_str(&format!("workers = {n}\n"));
    }
    if let Some(tls) = tls {
        top.push_str(&format!(
            "[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
            tls.server_cert().display(),
            tls.server_key().display()
        ));
    }
    let mut tail = "[log]\nformat = \"json\"\n".to_owned();
    if opts.cache {
        tail.push_str(&format!(
            "[cache]\ndir = \"{}\"\nmax_size = \"{}\"\nconfirm_ttl = \"{}\"\nstale_if_error = \"{}\"\n",
            cache_dir.display(),
            opts.max_size,
            opts.confirm_ttl,
            opts.stale_if_error
        ));
    }
    super::stack::plain_config(upstream, &top, "", &tail)
}

/// Parses JSON access-log lines (complete lines only).
pub fn parse_log(text: &str) -> Vec<LogLine> {
    super::complete_lines(text)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| LogLine {
            method: v["method"].as_str().unwrap_or_default().to_owned(),
            path: v["path"].as_str().unwrap_or_default().to_owned(),
            status: v["status"].as_u64().unwrap_or_default(),
            cache: v.get("cache").and_then(|c| c.as_str()).map(str::to_owned),
            raw: v,
        })
        .collect()
}

/// `/v2/REPO/blobs/DIGEST`.
pub fn blob_path(repo: &str, digest: &str) -> String {
    format!("/v2/{repo}/blobs/{digest}")
}

/// `n` random bytes (a fresh seed each call) and their `sha256:` digest.
pub fn random_blob(n: u64) -> (Vec<u8>, String) {
    let mut data = vec![0u8; usize::try_from(n).expect("blob fits in memory")];
    RandomStream::new(fresh_seed()).fill(&mut data);
    let digest = sha256_digest(&data);
    (data, digest)
}

/// Uploads `data` into `repo` straight at the registry (`POST`, then one
/// `PUT` with the body and its digest); returns the digest.
pub fn push_blob(registry: SocketAddr, repo: &str, data: &[u8]) -> String {
    let digest = sha256_digest(data);
    let r = http::request(
        registry,
        "POST",
        &format!("/v2/{repo}/blobs/uploads/"),
        None,
        &[],
        b"",
    )
    .expect("POST an upload to the registry");
    assert_eq!(r.status, 202, "start upload: {r:?}");
    let location = http::path_of(r.header("location").expect("upload Location"));
    let sep = if location.contains('?') { '&' } else { '?' };
    let put = format!("{location}{sep}digest={digest}");
    let r = http::request(
        registry,
        "PUT",
        &put,
        None,
        &[("Content-Type", "application/octet-stream")],
        data,
    )
    .expect("PUT the blob to the registry");
    assert_eq!(r.status, 201, "finish upload: {r:?} {}", r.body_text());
    digest
}

/// `GET`s of blob `digest` (any repository) the registry answered 200:
/// the bodies it sent. Call [`Registry::settle`] first after a transfer.
pub fn blob_gets(registry: &Registry, digest: &str) -> usize {
    let tail = format!("/blobs/{digest}");
    registry
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.status == 200 && r.uri.ends_with(&tail))
        .count()
}

/// Every regular file under `dir`, recursively (none if it is missing).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let path = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => out.extend(files_under(&path)),
            Ok(_) => out.push(path),
            Err(_) => {}
        }
    }
    out
}

/// The registry's headers for a blob, as a fake origin sends them.
fn blob_headers(digest: &str) -> Vec<(&'static str, String)> {
    vec![
        ("Content-Type", "application/octet-stream".into()),
        ("Docker-Content-Digest", digest.to_owned()),
        ("Docker-Distribution-Api-Version", "registry/2.0".into()),
        ("Accept-Ranges", "bytes".into()),
        ("ETag", format!("\"{digest}\"")),
    ]
}

/// A response head for a blob of `len` bytes (status 200).
pub fn blob_head(digest: &str, len: usize) -> Vec<u8> {
    let len = len.to_string();
    let mut fields: Vec<(&str, String)> = blob_headers(digest);
    fields.push(("Content-Length", len));
    let borrowed: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    origin::head(200, &borrowed)
}

/// What a registry does for `req` that is not a blob `GET`: `/v2/` is
/// 200, a `HEAD` of `/blobs/DIGEST` is 200 with the blob's headers, and
/// anything else 404. `None` for a `GET` of the blob (the test decides).
pub fn serve_blob(req: &Request, data: &[u8], digest: &str) -> Option<Vec<Step>> {
    let path = req.target.split('?').next().unwrap_or_default();
    let is_blob = path.ends_with(&format!("/blobs/{digest}"));
    if is_blob && req.method == "GET" {
        return None;
    }
    let bytes = if path == "/v2/" || path == "/v2" {
        origin::response(200, &[("Content-Type", "application/json")], b"{}")
    } else if is_blob && req.method == "HEAD" {
        blob_head(digest, data.len())
    } else {
        let body = br#"{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown to registry"}]}"#;
        answer(req, 404, &[("Content-Type", "application/json")], body)
    };
    Some(vec![Step::Write(bytes)])
}

/// A whole answer with `Content-Length`; to a `HEAD`, the head alone.
pub fn answer(req: &Request, status: u16, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut bytes = origin::response(status, headers, body);
    if req.method == "HEAD" {
        bytes.truncate(bytes.len() - body.len());
    }
    bytes
}

/// The whole `GET` answer of a blob, in pieces of `piece` bytes with
/// `pause` between them (a slow origin).
pub fn blob_answer(data: &[u8], digest: &str, piece: usize, pause: Duration) -> Vec<Step> {
    let mut steps = vec![Step::Write(blob_head(digest, data.len()))];
    for (i, chunk) in data.chunks(piece.max(1)).enumerate() {
        if i > 0 && !pause.is_zero() {
            steps.push(Step::Sleep(pause));
        }
        steps.push(Step::Write(chunk.to_vec()));
    }
    steps
}

/// Counts the `GET`s of `digest` a fake origin received.
pub fn origin_gets(requests: &[Request], digest: &str) -> usize {
    let tail = format!("/blobs/{digest}");
    requests
        .iter()
        .filter(|r| r.method == "GET" && r.target.ends_with(&tail))
        .count()
}

/// A `GET` whose body is read a few KiB at a time: after `first` bytes it
/// holds still until `gate` opens, then reads the rest in `piece`-byte
/// reads. `progress` counts the body bytes read so far.
pub struct SlowRead {
    pub first: u64,
    pub piece: usize,
    pub gate: Arc<AtomicBool>,
    pub progress: Arc<AtomicU64>,
}

/// The result of a [`SlowRead`]: the status and the whole body.
#[derive(Debug)]
pub struct SlowBody {
    pub status: u16,
    pub body: Vec<u8>,
}

impl SlowRead {
    pub fn new(first: u64, piece: usize) -> SlowRead {
        SlowRead {
            first,
            piece,
            gate: Arc::new(AtomicBool::new(false)),
            progress: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Sends `GET path` to `ep` as [`USER`] and reads the answer as said.
    /// Bounded: the socket's read timeout, and [`WAIT`] × 4 at the gate.
    pub fn run(&self, ep: &Endpoint, path: &str) -> io::Result<SlowBody> {
        use std::io::Read;
        let addr = ep.addr;
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
        // A small receive buffer (set before the handshake fixes the
        // window), so the server's sends wait on this reader.
        socket.set_recv_buffer_size(16 * 1024)?;
        socket.connect_timeout(&addr.into(), http::DEFAULT_TIMEOUT)?;
        let mut sock: std::net::TcpStream = socket.into();
        sock.set_read_timeout(Some(http::DEFAULT_TIMEOUT))?;
        let host = addr.to_string();
        let req = http::build_request("GET", path, Some(USER), &[("Host", &host)], b"");
        std::io::Write::write_all(&mut sock, &req)?;
        // The head, byte by byte up to the blank line (small).
        let mut head = Vec::new();
        let mut one = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if sock.read(&mut one)? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed in the head",
                ));
            }
            head.push(one[0]);
            if head.len() > 64 * 1024 {
                return Err(io::Error::other("head too large"));
            }
        }
        let text = String::from_utf8_lossy(&head).into_owned();
        let status: u16 = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::other(format!("bad head {text:?}")))?;
        let len: u64 = text
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .ok_or_else(|| io::Error::other(format!("no Content-Length in {text:?}")))?;
        let mut body = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        let mut buf = vec![0u8; self.piece];
        while (body.len() as u64) < len {
            if body.len() as u64 >= self.first && !self.gate.load(Ordering::SeqCst) {
                let open =
                    super::wait_for(WAIT * 4, || self.gate.load(Ordering::SeqCst).then_some(()));
                if open.is_none() {
                    return Err(io::Error::other("the test never opened the gate"));
                }
            }
            let want = (len - body.len() as u64).min(self.piece as u64) as usize;
            let n = sock.read(&mut buf[..want])?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("closed after {} of {len} body bytes", body.len()),
                ));
            }
            body.extend_from_slice(&buf[..n]);
            self.progress.store(body.len() as u64, Ordering::SeqCst);
        }
        Ok(SlowBody { status, body })
    }
}

/// A tmpfs of `size_mib` MiB mounted on a fresh directory; unmounted (and
/// the directory removed) on drop. `None` (after [`super::skip_unless_ci`])
/// where mounting is not allowed.
pub struct Tmpfs {
    path: PathBuf,
    _parent: tempfile::TempDir,
}

impl Tmpfs {
    pub fn mount(size_mib: u64) -> Option<Tmpfs> {
        let parent = tempfile::tempdir().expect("temp dir for a tmpfs");
        let path = parent.path().join("fs");
        std::fs::create_dir(&path).expect("tmpfs mount point");
        let run = super::cmd::run(
            std::process::Command::new("mount")
                .args(["-t", "tmpfs", "-o"])
                .arg(format!("size={}", size_mib * MIB))
                .arg("tmpfs")
                .arg(&path),
            Duration::from_secs(20),
        );
        if !run.success() {
            super::skip_unless_ci(
                &format!("cannot mount a tmpfs: {}", run.output().trim()),
                "run as root with CAP_SYS_ADMIN (mount(8) is in util-linux)",
            );
            return None;
        }
        Some(Tmpfs {
            path,
            _parent: parent,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let umount = |lazy: bool| {
            let mut cmd = std::process::Command::new("umount");
            if lazy {
                // Something still holds a file open: detach it now, the
                // kernel frees it when the last holder goes.
                cmd.arg("-l");
            }
            super::cmd::run(cmd.arg(&self.path), Duration::from_secs(20)).success()
        };
        if !umount(false) {
            umount(true);
        }
    }
}

/// A `GET` whose body was hashed as it came, not kept.
#[derive(Debug)]
pub struct Hashed {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub len: u64,
    /// `sha256:<hex>` of the body.
    pub digest: String,
}

struct HashSink(Sha256);

impl io::Write for HashSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `GET path` as [`USER`], the body hashed as it arrives (for many large
/// concurrent downloads). `Err` when the server closes short of its
/// `Content-Length`.
pub fn get_hashed(ep: &Endpoint, path: &str) -> io::Result<Hashed> {
    let mut conn = http::Conn::connect(ep)?;
    let host = ep.addr.to_string();
    conn.send(&http::build_request(
        "GET",
        path,
        Some(USER),
        &[("Host", &host)],
        b"",
    ))?;
    let mut sink = HashSink(Sha256::new());
    let r = conn.read_response_to(&mut sink)?;
    Ok(Hashed {
        status: r.status,
        headers: r.headers,
        len: r.body_len,
        digest: format!("sha256:{}", sink.0.finish_hex()),
    })
}

/// Waits until `files` lists nothing (a failed fill's file is removed as
/// the request ends); returns whether it did within [`WAIT`].
pub fn wait_empty(files: impl Fn() -> Vec<PathBuf>) -> bool {
    super::wait_for(WAIT, || files().is_empty().then_some(())).is_some()
}
