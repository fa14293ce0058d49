//! The admin port under abuse (issue 9, item 4): it answers `/healthz`
//! while one client trickles a head a byte at a time and others send an
//! endless line; the trickler is cut off by the whole-request deadline;
//! an endless line gets 431 after 32 KiB and costs no memory; idle
//! connections past the cap are closed at once.
//!
//! The admin port needs no registry: the upstream is an address nobody
//! listens on.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::http::{self, Conn};
use support::proxy::Proxy;
use support::stack;

/// regproxy's whole-request deadline on the admin port, plus slack for a
/// loaded machine.
const DEADLINE_AND_SLACK: Duration = Duration::from_secs(5 + 5);

fn proxy(dir: &std::path::Path) -> Proxy {
    support::write_htpasswd(&dir.join("users"), &[("alice", "pw")]);
    // Nothing answers on the discard port: these tests never reach it.
    let upstream = SocketAddr::from(([127, 0, 0, 1], 9));
    Proxy::start(&stack::plain_config(upstream, "workers = 1", "", ""), dir)
}

fn healthz(admin: SocketAddr) -> u16 {
    let mut c = Conn::connect(admin).unwrap();
    // Generous: only "answers at all" is asserted, not how fast.
    c.set_timeout(Duration::from_secs(4)).unwrap();
    c.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    c.read_response().map_or(0, |r| r.status)
}

#[test]
fn answers_while_one_client_trickles_and_another_sends_an_endless_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = proxy(dir.path());
    let admin = p.admin_addr();
    assert_eq!(healthz(admin), 200);

    // A trickler: a byte every 200 ms, never finishing the head.
    let stop = Arc::new(AtomicBool::new(false));
    let trickler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut s = TcpStream::connect(admin).unwrap();
            let started = Instant::now();
            for b in b"GET /healthz HTTP/1.1\r\nX-Slow: "
                .iter()
                .chain([b'a'; 200].iter())
            {
                if stop.load(Ordering::Relaxed) || s.write_all(&[*b]).is_err() {
                    // Cut off by the server (or the test is over).
                    return Some(started.elapsed());
                }
                // Not synchronisation: the trickle rate (a byte per 200 ms).
                std::thread::sleep(Duration::from_millis(200));
            }
            None
        })
    };
    // Endless lines, from a few clients at once: each is bounded here at
    // 64 MiB, far past what the server may buffer.
    let endless: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(admin).unwrap();
                s.write_all(b"GET /").unwrap();
                let chunk = vec![b'a'; 64 * 1024];
                let mut sent = 0usize;
                while sent < 64 << 20 && s.write_all(&chunk).is_ok() {
                    sent += chunk.len();
                }
                sent
            })
        })
        .collect();

    // Meanwhile, probes keep getting answers.
    for _ in 0..10 {
        assert_eq!(healthz(admin), 200, "a probe went unanswered");
        // Not synchronisation: probes spread over the attack, as a
        // kubelet's would be.
        std::thread::sleep(Duration::from_millis(100));
    }
    for e in endless {
        let sent = e.join().unwrap();
        assert!(sent < 64 << 20, "an endless line was read without end");
    }
    // The trickler is cut off by the whole-request deadline, even though
    // every single read arrived well within any per-read timeout.
    let cut = support::wait_for(DEADLINE_AND_SLACK, || trickler.is_finished().then_some(()));
    stop.store(true, Ordering::Relaxed);
    let elapsed = trickler.join().unwrap();
    assert!(
        cut.is_some() && elapsed.is_some(),
        "the trickler was never cut off"
    );
    assert_eq!(healthz(admin), 200);
}

#[test]
fn an_endless_line_gets_431_and_costs_no_memory() {
    let dir = tempfile::tempdir().unwrap();
    let p = proxy(dir.path());
    let admin = p.admin_addr();
    assert_eq!(healthz(admin), 200);
    let before = p.vm_rss_kib();
    // One after another, 64 clients each offering 32 MiB of request line.
    for _ in 0..64 {
        let mut c = Conn::connect(admin).unwrap();
        c.set_timeout(Duration::from_secs(10)).unwrap();
        c.send(b"GET /").unwrap();
        let chunk = vec![b'a'; 64 * 1024];
        for _ in 0..512 {
            if c.send(&chunk).is_err() {
                break;
            }
        }
        // The answer may be lost to a reset if we were still sending when
        // the server closed; when it arrives it is 431 or 414.
        if let Ok(r) = c.read_response() {
            assert!(matches!(r.status, 414 | 431), "status {}", r.status);
        }
    }
    let after = p.vm_rss_kib();
    assert!(
        after < before + 8 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
    assert_eq!(healthz(admin), 200);
}

#[test]
fn idle_connections_do_not_block_probes_and_extra_ones_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let p = proxy(dir.path());
    let admin = p.admin_addr();
    // Idle connections, well under the cap: probes still answer at once.
    let mut idle: Vec<Conn> = (0..100).map(|_| Conn::connect(admin).unwrap()).collect();
    for _ in 0..5 {
        assert_eq!(healthz(admin), 200);
    }
    // Past the cap (256 served at once) new connections are closed at
    // accept instead of waiting in the backlog.
    idle.extend((0..200).map(|_| Conn::connect(admin).unwrap()));
    let closed = idle
        .iter_mut()
        .map(|c| c.is_closed(Duration::from_millis(20)))
        .filter(|closed| *closed)
        .count();
    assert!(
        closed >= 300 - 256 - 2,
        "only {closed} idle connections were closed"
    );
    drop(idle);
    // Once they go, the slots are free again.
    let back = support::wait_for(DEADLINE_AND_SLACK, || (healthz(admin) == 200).then_some(()));
    assert!(back.is_some());
}

#[test]
fn routes_methods_and_bad_heads() {
    let dir = tempfile::tempdir().unwrap();
    let p = proxy(dir.path());
    let admin = p.admin_addr();
    let m = http::get(admin, "/metrics", None, &[]).unwrap();
    assert_eq!(m.status, 200);
    assert!(m.body_text().contains("regproxy_requests_total"));
    assert_eq!(http::get(admin, "/nope", None, &[]).unwrap().status, 404);
    let post = http::send_raw(
        admin,
        b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(post.unwrap().status, 405);
    let mut c = Conn::connect(admin).unwrap();
    c.send(b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let head = c.read_head_response().unwrap();
    assert_eq!(head.status, 200);
    let bad = http::send_raw(
        admin,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
    );
    assert_eq!(bad.unwrap().status, 400);
}
