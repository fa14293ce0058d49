//! Lockouts that protect users instead of hurting them (issue 9, item 2),
//! against the real registry:
//! - behind a trusted balancer, failures count against the client that
//!   `X-Forwarded-For` names, never the balancer;
//! - a stranger's guesses lock alice's name for new addresses, not for the
//!   runner she logged in from;
//! - a guessing flood from many source addresses (bound 127.x.y.z) does not
//!   turn alice's uncached, valid logins away with 503.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::http::{self, Conn};
use support::stack::PlainStack;

fn stack(htpasswd: &str, auth: &str, forwarding: &str) -> PlainStack {
    PlainStack::start(htpasswd, "", auth, &format!("[forwarding]\n{forwarding}"))
}

/// `GET /v2/` as `user` through a balancer that says the client is `xff`.
fn login_via(addr: SocketAddr, xff: &str, user: &str, pass: &str) -> u16 {
    http::get(
        addr,
        "/v2/",
        Some((user, pass)),
        &[("X-Forwarded-For", xff)],
    )
    .unwrap()
    .status
}

#[test]
fn behind_a_balancer_the_forwarded_client_is_counted_not_the_balancer() {
    let s = stack(
        &support::htpasswd_text(&[("alice", "pw"), ("bob", "pw2")]),
        "max_failures = 3\ncache_ttl = \"0s\"",
        "trust_forwarded_headers = true",
    );
    let addr = s.proxy.addr();
    for i in 0..3 {
        let st = login_via(addr, "198.51.100.7", &format!("ghost{i}"), "x");
        assert_eq!(st, 401);
    }
    assert_eq!(login_via(addr, "198.51.100.7", "ghost9", "x"), 429);
    // The balancer (127.0.0.1) is not blocked: other clients behind it
    // log in as usual.
    assert_eq!(login_via(addr, "198.51.100.8", "bob", "pw2"), 200);
    assert_eq!(login_via(addr, "198.51.100.9", "alice", "pw"), 200);
    // The balancer appends the real client on the right; what the client
    // wrote on the left does not get it out of its block.
    assert_eq!(
        login_via(addr, "198.51.100.8, 198.51.100.7", "bob", "pw2"),
        429
    );
    // The access log names the client, not the balancer.
    let lines = s.proxy.wait_for_access_lines(7, Duration::from_secs(5));
    assert!(
        lines.iter().any(|l| l.contains("198.51.100.8 bob ")),
        "{lines:?}"
    );
}

#[test]
fn a_strangers_guesses_cannot_lock_alice_out_of_her_runner() {
    let s = stack(
        &support::htpasswd_text(&[("alice", "pw")]),
        "max_failures = 3\ncache_ttl = \"0s\"",
        "trust_forwarded_headers = true",
    );
    let addr = s.proxy.addr();
    let runner = "192.0.2.10";
    assert_eq!(login_via(addr, runner, "alice", "pw"), 200);
    // The stranger spreads guesses over addresses, so only alice's name
    // counts them.
    for i in 1..=3 {
        let st = login_via(addr, &format!("203.0.113.{i}"), "alice", "guess");
        assert_eq!(st, 401);
    }
    assert_eq!(login_via(addr, "203.0.113.4", "alice", "guess"), 429);
    // Alice's name is now blocked for addresses it never logged in from...
    assert_eq!(login_via(addr, "203.0.113.5", "alice", "pw"), 429);
    // ...but her runner keeps working, uncached (cache_ttl = 0), again and
    // again.
    for _ in 0..3 {
        assert_eq!(login_via(addr, runner, "alice", "pw"), 200);
    }
    // And her logins did not reopen the stranger's guessing.
    assert_eq!(login_via(addr, "203.0.113.6", "alice", "guess"), 429);
}

/// One login attempt from `src`: its status, or 0 for a transport error.
fn login_from(src: IpAddr, addr: SocketAddr, user: &str, pass: &str) -> u16 {
    let Ok(mut c) = Conn::connect_from(src, addr) else {
        return 0;
    };
    let req = http::build_request("GET", "/v2/", Some((user, pass)), &[], b"");
    if c.send(&req).is_err() {
        return 0;
    }
    c.read_response().map_or(0, |r| r.status)
}

/// Flood threads and how many guesses each sends at most.
const FLOOD_THREADS: u8 = 48;
const FLOOD_ROUNDS: u8 = 40;
/// Alice's uncached logins during the flood.
const ALICE_LOGINS: usize = 10;

#[test]
fn valid_logins_survive_a_guessing_flood_from_many_addresses() {
    // bcrypt cost 10 (~70 ms a check), one hash thread, a short queue: the
    // flood keeps the queue full all the time.
    let hash = bcrypt::hash("pw", 10).unwrap();
    let s = stack(
        &format!("alice:{hash}\n"),
        "cache_ttl = \"0s\"\nhash_threads = 1\nhash_queue = 16",
        "",
    );
    let addr = s.proxy.addr();
    let runner = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    assert_eq!(login_from(runner, addr, "alice", "pw"), 200);

    let stop = Arc::new(AtomicBool::new(false));
    let flood_statuses = Arc::new(Mutex::new(BTreeMap::<u16, u32>::new()));
    let flood: Vec<_> = (0..FLOOD_THREADS)
        .map(|t| {
            let (stop, statuses) = (stop.clone(), flood_statuses.clone());
            std::thread::spawn(move || {
                // Every guess from its own address, for its own made-up
                // name: neither limiter counter ever reaches its limit.
                for r in 0..FLOOD_ROUNDS {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let src = IpAddr::V4(Ipv4Addr::new(127, 1 + t, r, 1));
                    let st = login_from(src, addr, &format!("ghost-{t}-{r}"), "guess");
                    *statuses.lock().unwrap().entry(st).or_default() += 1;
                }
            })
        })
        .collect();

    // Once the flood has filled the queue (a guess was refused with 503),
    // log in as alice from her runner.
    let full = support::wait_for(Duration::from_secs(30), || {
        flood_statuses
            .lock()
            .unwrap()
            .contains_key(&503)
            .then_some(())
    });
    assert!(full.is_some(), "the flood never filled the hash queue");
    let mut alice = BTreeMap::<u16, u32>::new();
    let mut took = Vec::new();
    for _ in 0..ALICE_LOGINS {
        let t0 = Instant::now();
        let st = login_from(runner, addr, "alice", "pw");
        took.push(t0.elapsed());
        *alice.entry(st).or_default() += 1;
    }
    // And once from an address she never used: that one competes with the
    // flood on equal terms (reported, not asserted).
    let stranger_ok = login_from(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)), addr, "alice", "pw");
    stop.store(true, Ordering::Relaxed);
    for f in flood {
        f.join().unwrap();
    }
    took.sort();
    let flood_statuses = flood_statuses.lock().unwrap().clone();
    eprintln!(
        "flood: {} guesses from as many addresses, statuses {flood_statuses:?}; \
         alice from her runner: statuses {alice:?}, median {:?}, max {:?}; \
         alice from a new address: {stranger_ok}; hashes run: {}",
        flood_statuses.values().sum::<u32>(),
        took[took.len() / 2],
        took[took.len() - 1],
        s.proxy.metric("regproxy_password_hashes_total"),
    );
    assert!(
        flood_statuses.get(&503).copied().unwrap_or(0) > 0,
        "the flood never filled the queue, so this proved nothing: {flood_statuses:?}"
    );
    assert_eq!(
        alice.get(&200).copied().unwrap_or(0) as usize,
        ALICE_LOGINS,
        "alice's runner was turned away: {alice:?}"
    );
}
