//! The data path at the kernel's limit: plain bodies spliced by the worker
//! itself (non-blocking splice(2) on readiness, no io_uring io-wq thread),
//! pipes sized by `splice_pipe_size` and capped by the kernel's limit, and
//! bodies arriving byte-identical both ways.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::http;
use support::origin::{self, Origin, Step};
use support::proxy::Proxy;
use support::registry::Registry;
use support::skopeo::sha256_digest;
use support::stack;

const USER: (&str, &str) = ("testuser", "testpassword");
const BODY_BYTES: usize = 24 << 20;

/// A regproxy in front of `upstream`, plain, one worker, with `top` keys.
fn start(upstream: std::net::SocketAddr, top: &str, dir: &std::path::Path) -> Proxy {
    support::write_htpasswd(&dir.join("users"), &[USER]);
    let config = stack::plain_config(upstream, &format!("workers = 1\n{top}"), "", "");
    Proxy::start(&config, dir)
}

/// Deterministic bytes that are not all alike, so a shifted or repeated
/// piece would show.
fn pattern(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn blob_origin(data: Vec<u8>) -> Origin {
    Origin::start(move |req| {
        if req.method == "GET" {
            let len = data.len().to_string();
            let mut out = origin::head(200, &[("Content-Length", &len)]);
            out.extend_from_slice(&data);
            vec![Step::Write(out)]
        } else {
            vec![Step::Write(origin::response(201, &[], b""))]
        }
    })
}

/// Threads of `pid` whose name starts with `prefix`.
fn threads_named(pid: u32, prefix: &str) -> Vec<String> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return vec![];
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|c| c.trim().to_owned())
        .filter(|c| c.starts_with(prefix))
        .collect()
}

#[test]
fn plain_bodies_are_spliced_by_the_worker_not_io_wq_threads() {
    let data = pattern(BODY_BYTES);
    let o = blob_origin(data.clone());
    let dir = tempfile::tempdir().unwrap();
    let proxy = start(o.addr(), "", dir.path());

    // A Content-Length response, read raw so every byte is compared.
    let mut c = TcpStream::connect(proxy.addr()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    c.write_all(&http::build_request(
        "GET",
        "/v2/big/blobs/sha256:aa",
        Some(USER),
        &[],
        b"",
    ))
    .unwrap();
    let mut got = Vec::new();
    c.read_to_end(&mut got).unwrap();
    let end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(got.starts_with(b"HTTP/1.1 200 "), "{:?}", &got[..end]);
    assert!(
        got[end..] == data[..],
        "the GET body differs from the origin's"
    );

    // A Content-Length upload.
    let r = http::request(
        proxy.addr(),
        "PUT",
        "/v2/big/blobs/uploads/x?digest=sha256:aa",
        Some(USER),
        &[],
        &data,
    )
    .unwrap();
    assert_eq!(r.status, 201);
    let reqs = o.wait_requests(2, Duration::from_secs(20));
    assert!(reqs[1].body == data, "the PUT body differs at the origin");

    let spliced = proxy.metric("regproxy_spliced_bytes_total");
    assert!(spliced >= 2 * BODY_BYTES as u64 - 128 * 1024, "{spliced}");
    // io_uring runs every IORING_OP_SPLICE on an io-wq worker thread
    // (iou-wrk-*), which lingers a few seconds after its last job; the
    // worker's own non-blocking splice(2) needs none.
    let wq = threads_named(proxy.pid(), "iou-wrk");
    assert!(wq.is_empty(), "io-wq workers ran the splice: {wq:?}");
}

/// A chunked PATCH whose chunks are large (spliced) and small (copied),
/// one with an extension, then the upload's PUT: the real registry checks
/// the digest, and the blob read back is the same bytes.
#[test]
fn chunked_upload_with_spliced_chunks_arrives_byte_identical() {
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let proxy = start(registry.addr(), "", dir.path());
    let data = pattern(3 << 20);
    let digest = sha256_digest(&data);
    let cuts = [
        0,
        300_000,
        300_010,
        300_010 + (1 << 20),
        1_500_000,
        1_500_100,
        data.len(),
    ];
    let mut body = Vec::new();
    for (i, w) in cuts.windows(2).enumerate() {
        let ext = if i == 1 { ";note=\"small\"" } else { "" };
        body.extend_from_slice(format!("{:X}{ext}\r\n", w[1] - w[0]).as_bytes());
        body.extend_from_slice(&data[w[0]..w[1]]);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\nX-Trailer: dropped\r\n\r\n");

    let path = http::start_upload(proxy.addr(), "dp/chunked", USER);
    let before = proxy.metric("regproxy_spliced_bytes_total");
    let r = http::request(
        proxy.addr(),
        "PATCH",
        &path,
        Some(USER),
        &[
            ("Transfer-Encoding", "chunked"),
            ("Content-Type", "application/octet-stream"),
        ],
        &body,
    )
    .unwrap();
    assert_eq!(r.status, 202, "{r:?}");
    let spliced = proxy.metric("regproxy_spliced_bytes_total") - before;
    assert!(
        spliced >= 1 << 20,
        "large chunks were not spliced: {spliced}"
    );
    let path = http::path_of(r.header("location").unwrap());
    let r = http::request(
        proxy.addr(),
        "PUT",
        &format!("{path}&digest={digest}"),
        Some(USER),
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 201, "the registry refused the digest: {r:?}");
    let r = http::get(
        proxy.addr(),
        &format!("/v2/dp/chunked/blobs/{digest}"),
        Some(USER),
        &[],
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert!(r.body == data, "the blob read back differs");
}

/// curl's chunked upload (`-T -`: one 64 KiB chunk per write, its CRLF at
/// the end of the write) through the real registry: nearly every byte is
/// spliced, chunk lines included, the registry's digest check passes, and
/// the blob reads back the same.
#[test]
fn curl_chunked_upload_is_spliced_chunk_lines_and_all() {
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let proxy = start(registry.addr(), "", dir.path());
    let data = pattern(16 << 20);
    let digest = sha256_digest(&data);
    let url = format!(
        "http://{}{}",
        proxy.addr(),
        http::start_upload(proxy.addr(), "dp/curl", USER)
    );
    // From a file, as `bench/compare` does: curl then reads and sends
    // full 64 KiB chunks (from a pipe it sends whatever each read got).
    let file = dir.path().join("blob");
    std::fs::write(&file, &data).unwrap();
    let before = proxy.metric("regproxy_spliced_bytes_total");
    let out = std::process::Command::new("curl")
        .args(["--http1.1", "-sS", "-o", "/dev/null", "-w", "%{http_code}"])
        .args(["-u", &format!("{}:{}", USER.0, USER.1)])
        .args(["-H", "Transfer-Encoding: chunked", "-T", "-"])
        .arg(format!("{url}&digest={digest}"))
        .stdin(std::fs::File::open(&file).unwrap())
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "201", "{out:?}");
    let spliced = proxy.metric("regproxy_spliced_bytes_total") - before;
    // Copied: what came with the head, and the odd chunk whose line had
    // not arrived whole when it was looked at.
    assert!(
        spliced >= data.len() as u64 / 100 * 95,
        "only {spliced} of {} bytes were spliced",
        data.len()
    );
    let r = http::get(
        proxy.addr(),
        &format!("/v2/dp/curl/blobs/{digest}"),
        Some(USER),
        &[],
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert!(r.body == data, "the blob read back differs");
}

/// CPU seconds (user + system) `pid` has used, from `/proc/PID/stat`.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    // utime and stime are fields 14 and 15; `fields` starts at field 3.
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// A chunk line that arrives cut in two, the rest 300 ms later, between
/// large spliced chunks: regproxy waits for the rest without spinning on
/// the bytes already there (SO_RCVLOWAT), passes the line unchanged, and
/// splices the chunk after it.
#[test]
fn a_chunk_line_cut_in_two_is_waited_for_not_spun_on() {
    let o = blob_origin(Vec::new());
    let dir = tempfile::tempdir().unwrap();
    let proxy = start(o.addr(), "", dir.path());
    let data = pattern(4 << 16);
    let mut c = TcpStream::connect(proxy.addr()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let head = http::build_request(
        "PATCH",
        "/v2/big/blobs/uploads/x",
        Some(USER),
        &[("Transfer-Encoding", "chunked")],
        b"",
    );
    // Chunks of 64 KiB in upper-case hex; the third line is cut after
    // "1", and the relay has spliced two chunks by then.
    let mut first = head;
    for piece in data.chunks(1 << 16).take(2) {
        first.extend_from_slice(b"10000\r\n");
        first.extend_from_slice(piece);
        first.extend_from_slice(b"\r\n");
    }
    first.extend_from_slice(b"1");
    c.write_all(&first).unwrap();
    // The relay has taken the two chunks: at most the cut "1" is unread
    // (SO_RCVLOWAT keeps it queued until the line's rest arrives).
    let (client, server) = (c.local_addr().unwrap(), proxy.addr());
    let taken = support::wait_for(Duration::from_secs(10), || {
        (support::tcp::unread(server, client) <= 1).then_some(())
    });
    assert!(taken.is_some(), "regproxy did not read the first chunks");
    let cpu_before = cpu_seconds(proxy.pid());
    // Not synchronisation: the window in which a spinning relay would
    // burn CPU.
    std::thread::sleep(Duration::from_millis(300));
    let spun = cpu_seconds(proxy.pid()) - cpu_before;
    let mut rest = b"0000\r\n".to_vec();
    for (i, piece) in data.chunks(1 << 16).skip(2).enumerate() {
        if i > 0 {
            rest.extend_from_slice(b"10000\r\n");
        }
        rest.extend_from_slice(piece);
        rest.extend_from_slice(b"\r\n");
    }
    rest.extend_from_slice(b"0\r\n\r\n");
    c.write_all(&rest).unwrap();
    let mut got = [0u8; 12];
    c.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"HTTP/1.1 201", "{}", String::from_utf8_lossy(&got));
    assert!(spun < 0.1, "{spun} CPU-s while a chunk line was cut");
    let reqs = o.wait_requests(1, Duration::from_secs(10));
    assert!(reqs[0].body == data, "the origin got a different body");
    let mut want = Vec::new();
    for piece in data.chunks(1 << 16) {
        want.extend_from_slice(b"10000\r\n");
        want.extend_from_slice(piece);
        want.extend_from_slice(b"\r\n");
    }
    want.extend_from_slice(b"0\r\n\r\n");
    assert!(
        reqs[0].raw_body == want,
        "the chunk lines were not passed unchanged"
    );
    assert!(proxy.metric("regproxy_spliced_bytes_total") >= 3 << 16);
}

/// A chunk declaring 2^64 - 1 bytes, spliced until the client gives up:
/// the upload fails, nothing overflows, and the worker serves on.
#[test]
fn a_chunk_of_two_to_the_64_bytes_fails_cleanly() {
    let o = blob_origin(Vec::new());
    let dir = tempfile::tempdir().unwrap();
    let proxy = start(o.addr(), "", dir.path());
    let mut c = TcpStream::connect(proxy.addr()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut req = http::build_request(
        "PATCH",
        "/v2/big/blobs/uploads/x",
        Some(USER),
        &[("Transfer-Encoding", "chunked")],
        b"",
    );
    req.extend_from_slice(b"10000\r\n");
    req.extend_from_slice(&pattern(1 << 16));
    req.extend_from_slice(b"\r\nFFFFFFFFFFFFFFFF\r\n");
    req.extend_from_slice(&pattern(1 << 17));
    c.write_all(&req).unwrap();
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let mut got = Vec::new();
    let _ = c.read_to_end(&mut got);
    assert!(
        !got.starts_with(b"HTTP/1.1 2"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    let r = http::get(proxy.addr(), "/v2/", Some(USER), &[]).unwrap();
    assert_eq!(r.status, 200, "the worker no longer serves");
    assert!(
        !proxy.stderr_text().contains("panicked"),
        "{}",
        proxy.stderr_text()
    );
}

#[test]
fn oversized_splice_pipe_is_capped_and_logged() {
    // Both conditions are the machine's, not a tool's, but a CI machine
    // has the kernel default (1 MiB) and a readable /proc: there they fail.
    let Some(max) = std::fs::read_to_string("/proc/sys/fs/pipe-max-size")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
    else {
        support::skip_unless_ci(
            "/proc/sys/fs/pipe-max-size is unreadable",
            "run where /proc is mounted",
        );
        return;
    };
    if max >= 1 << 30 {
        support::skip_unless_ci(
            &format!("pipe-max-size is {max}: no splice_pipe_size can exceed it"),
            "run with fs.pipe-max-size below 1 GiB (the kernel default is 1048576)",
        );
        return;
    }
    let data = pattern(1 << 20);
    let o = blob_origin(data.clone());
    let dir = tempfile::tempdir().unwrap();
    let proxy = start(
        o.addr(),
        &format!("splice_pipe_size = {}", max * 2),
        dir.path(),
    );
    assert!(
        proxy.wait_for_stderr("capped by the kernel", Duration::from_secs(10)),
        "{}",
        proxy.stderr_text()
    );
    assert!(
        proxy.stderr_text().contains(&format!("used={max}")),
        "{}",
        proxy.stderr_text()
    );
    // Still splices.
    let r = http::get(proxy.addr(), "/v2/big/blobs/sha256:aa", Some(USER), &[]).unwrap();
    assert_eq!(r.status, 200);
    assert!(r.body == data);
    assert!(proxy.metric("regproxy_spliced_bytes_total") > 0);
}

#[test]
fn splice_pipe_size_out_of_range_is_refused_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    support::write_htpasswd(&dir.path().join("users"), &[USER]);
    let config = "listen = \"127.0.0.1:0\"\nsplice_pipe_size = 100\n\
        [auth]\nhtpasswd = \"users\"\n[upstream]\nservers = [\"127.0.0.1:9\"]\n";
    let f = Proxy::try_start(config, dir.path()).err().unwrap();
    assert!(
        f.stderr.contains("regproxy.toml:2:") && f.stderr.contains("splice_pipe_size = 100"),
        "{}",
        f.stderr
    );
}
