//! Beyond one host: the PROXY protocol through a real HAProxy, health
//! checks against real registries, and failover between two
//! `docker-registry` replicas sharing one storage directory and secret.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};
use support::cmd::signal;
use support::http::{basic_auth_value, get, request};
use support::proxy::Proxy;
use support::registry::Registry;
use support::skopeo::sha256_digest;

const USER: (&str, &str) = ("testuser", "testpassword");

/// Connects to `to` from the loopback address `from`, as a client on
/// another host would.
fn connect_from(from: &str, to: SocketAddr) -> std::io::Result<TcpStream> {
    let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    let local: SocketAddr = format!("{from}:0").parse().unwrap();
    s.bind(&local.into())?;
    s.connect_timeout(&to.into(), Duration::from_secs(5))?;
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    Ok(s)
}

/// Sends `prefix` then an authenticated `GET /v2/` with `Connection:
/// close`; the status, or `None` when the connection closed without one.
fn get_v2_after(mut s: TcpStream, prefix: &[u8]) -> Option<u16> {
    let mut bytes = prefix.to_vec();
    bytes.extend_from_slice(
        format!(
            "GET /v2/ HTTP/1.1\r\nHost: registry\r\nAuthorization: {}\r\nConnection: close\r\n\r\n",
            basic_auth_value(USER.0, USER.1)
        )
        .as_bytes(),
    );
    s.write_all(&bytes).ok()?;
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// The client field (second) of every access-log line.
fn logged_clients(proxy: &Proxy) -> Vec<String> {
    proxy
        .access_log_lines()
        .iter()
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_owned))
        .collect()
}

/// The htpasswd file `users` in `dir/proxy`, the proxy's working folder.
fn users(dir: &Path) {
    std::fs::create_dir_all(dir.join("proxy")).unwrap();
    support::write_htpasswd(&dir.join("proxy/users"), &[USER]);
}

// === PROXY protocol ===

/// HAProxy in TCP mode, killed by PID on drop.
struct Haproxy {
    child: Child,
}

impl Haproxy {
    /// `None` where HAProxy is not installed (a failure under CI).
    fn start(dir: &Path, config: &str) -> Option<Haproxy> {
        let bin = support::require_tool("haproxy", "haproxy")?;
        let path = dir.join("haproxy.cfg");
        std::fs::write(&path, config).unwrap();
        let child = Command::new(bin)
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("haproxy.log")).unwrap())
            .spawn()
            .expect("run haproxy");
        Some(Haproxy { child })
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_listening(addr: SocketAddr) {
    let up = support::wait_for(Duration::from_secs(10), || {
        TcpStream::connect(addr).ok().map(|_| ())
    });
    assert!(up.is_some(), "nothing listens on {addr}");
}

#[test]
fn haproxy_send_proxy_v1_and_v2_carry_the_client_address() {
    let dir = tempfile::tempdir().unwrap();
    users(dir.path());
    let registry = Registry::start();
    let proxy = Proxy::start(
        &format!(
            r#"
listen = "127.0.0.1:0"
workers = 1
proxy_protocol = "optional"
[auth]
htpasswd = "users"
[upstream]
servers = ["{}"]
[forwarding]
trusted_proxies = ["127.0.0.1"]
"#,
            registry.addr()
        ),
        &dir.path().join("proxy"),
    );
    let (p1, p2) = (support::free_port(), support::free_port());
    let Some(_haproxy) = Haproxy::start(
        dir.path(),
        &format!(
            "global\n  maxconn 64\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n\
             listen v1\n  bind 127.0.0.1:{p1}\n  server r {up} send-proxy\n\
             listen v2\n  bind 127.0.0.1:{p2}\n  server r {up} send-proxy-v2\n",
            up = proxy.addr()
        ),
    ) else {
        return;
    };
    let (v1, v2): (SocketAddr, SocketAddr) = (
        format!("127.0.0.1:{p1}").parse().unwrap(),
        format!("127.0.0.1:{p2}").parse().unwrap(),
    );
    wait_listening(v1);
    wait_listening(v2);
    let before = logged_clients(&proxy).len();

    // Clients on "other hosts" (loopback addresses HAProxy is not on).
    assert_eq!(
        get_v2_after(connect_from("127.0.0.21", v1).unwrap(), b""),
        Some(200)
    );
    assert_eq!(
        get_v2_after(connect_from("127.0.0.22", v2).unwrap(), b""),
        Some(200)
    );
    // optional: a trusted peer may also come without a header.
    assert_eq!(
        get_v2_after(connect_from("127.0.0.1", proxy.addr()).unwrap(), b""),
        Some(200)
    );

    let lines = proxy.wait_for_access_lines(before + 3, Duration::from_secs(10));
    let clients = logged_clients(&proxy);
    assert_eq!(
        &clients[before..],
        ["127.0.0.21", "127.0.0.22", "127.0.0.1"],
        "{lines:#?}"
    );
    // The registry heard of the original client too.
    let seen = registry.access_log_text();
    assert!(
        seen.contains("127.0.0.21") || registry.log_text().contains("127.0.0.21"),
        "{seen}"
    );
}

fn v2_header(src: [u8; 4], sport: u16) -> Vec<u8> {
    let mut b = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
    b.extend_from_slice(&src);
    b.extend_from_slice(&[127, 0, 0, 1]);
    b.extend_from_slice(&sport.to_be_bytes());
    b.extend_from_slice(&5043u16.to_be_bytes());
    b
}

#[test]
fn proxy_header_from_an_untrusted_peer_or_malformed_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    users(dir.path());
    let registry = Registry::start();
    let proxy = Proxy::start(
        &format!(
            r#"
listen = "0.0.0.0:0"
workers = 1
proxy_protocol = "v2"
[auth]
htpasswd = "users"
[upstream]
servers = ["{}"]
[forwarding]
trusted_proxies = ["127.0.0.2"]
[admin]
listen = "127.0.0.1:0"
"#,
            registry.addr()
        ),
        &dir.path().join("proxy"),
    );
    let addr: SocketAddr = format!("127.0.0.1:{}", proxy.addr().port())
        .parse()
        .unwrap();
    let header = v2_header([203, 0, 113, 9], 40000);

    // The trusted balancer: its header names the client.
    assert_eq!(
        get_v2_after(connect_from("127.0.0.2", addr).unwrap(), &header),
        Some(200)
    );
    // Anyone else: a header is a forged address; closed, nothing answered.
    assert_eq!(
        get_v2_after(connect_from("127.0.0.3", addr).unwrap(), &header),
        None
    );
    // The trusted balancer without a header, with v1, or with garbage.
    let trusted = || connect_from("127.0.0.2", addr).unwrap();
    assert_eq!(get_v2_after(trusted(), b""), None);
    assert_eq!(
        get_v2_after(trusted(), b"PROXY TCP4 198.51.100.1 127.0.0.1 1 2\r\n"),
        None
    );
    let mut bad = header.clone();
    bad[12] = 0x22; // unknown command
    assert_eq!(get_v2_after(trusted(), &bad), None);

    let lines = proxy.wait_for_access_lines(1, Duration::from_secs(5));
    assert_eq!(logged_clients(&proxy), ["203.0.113.9"], "{lines:#?}");
    assert_eq!(proxy.metric("regproxy_proxy_protocol_refused_total"), 4);
}

// === health checks ===

/// `regproxy_upstream_server_<name>{server="addr"}` from /metrics.
fn server_metric(proxy: &Proxy, name: &str, server: SocketAddr) -> u64 {
    let text = get(proxy.admin_addr(), "/metrics", None, &[])
        .unwrap()
        .body_text();
    let key = format!("regproxy_upstream_server_{name}{{server=\"{server}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&key)?.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or_else(|| panic!("no {key} in\n{text}"))
}

fn two_replica_proxy(dir: &Path, a: SocketAddr, b: SocketAddr, workers: usize) -> Proxy {
    users(dir);
    Proxy::start(
        &format!(
            r#"
listen = "127.0.0.1:0"
workers = {workers}
[auth]
htpasswd = "users"
[upstream]
servers = ["{a}", "{b}"]
health_interval = "{INTERVAL_MS}ms"
health_timeout = "300ms"
health_rise = {RISE}
health_fall = {FALL}
connect_timeout = "1s"
[log]
format = "json"
[admin]
listen = "127.0.0.1:0"
"#
        ),
        &dir.join("proxy"),
    )
}

const INTERVAL_MS: u64 = 500;
const RISE: u64 = 2;
const FALL: u64 = 2;
/// Scheduling slack on top of the spec'd times (one interval plus the
/// check timeout, on a shared 2-core machine).
const SLACK: Duration = Duration::from_millis(INTERVAL_MS + 300 + 700);

#[test]
fn a_hung_server_leaves_rotation_within_fall_intervals_and_returns_after_rise() {
    let dir = tempfile::tempdir().unwrap();
    let a = Registry::start();
    let b = Registry::start_with_storage(a.storage());
    let proxy = two_replica_proxy(dir.path(), a.addr(), b.addr(), 2);
    let interval = Duration::from_millis(INTERVAL_MS);

    signal(b.pid(), "STOP");
    let stopped = Instant::now();
    let down = support::wait_for(Duration::from_secs(10), || {
        (server_metric(&proxy, "up", b.addr()) == 0).then(Instant::now)
    });
    let down = down.expect("b never left rotation").duration_since(stopped);
    eprintln!("hung server left rotation after {down:?}");
    assert!(down <= interval * FALL as u32 + SLACK, "{down:?}");

    // While b is down, every request goes to a.
    let to_b = server_metric(&proxy, "requests_total", b.addr());
    for _ in 0..40 {
        let r = get(proxy.addr(), "/v2/", Some(USER), &[]).unwrap();
        assert_eq!(r.status, 200);
    }
    assert_eq!(server_metric(&proxy, "requests_total", b.addr()), to_b);
    assert!(
        get(proxy.admin_addr(), "/healthz", None, &[])
            .unwrap()
            .status
            == 200
    );

    signal(b.pid(), "CONT");
    let resumed = Instant::now();
    let up = support::wait_for(Duration::from_secs(10), || {
        (server_metric(&proxy, "up", b.addr()) == 1).then(Instant::now)
    });
    let up = up.expect("b never returned").duration_since(resumed);
    eprintln!("server returned after {up:?}");
    assert!(up <= interval * RISE as u32 + SLACK, "{up:?}");
    for _ in 0..20 {
        get(proxy.addr(), "/v2/", Some(USER), &[]).unwrap();
    }
    assert!(server_metric(&proxy, "requests_total", b.addr()) > to_b);

    // Both hung: not ready, and requests still go somewhere (all of them).
    signal(a.pid(), "STOP");
    signal(b.pid(), "STOP");
    let unready = support::wait_for(Duration::from_secs(10), || {
        (get(proxy.admin_addr(), "/healthz", None, &[])
            .unwrap()
            .status
            == 503)
            .then_some(())
    });
    signal(a.pid(), "CONT");
    signal(b.pid(), "CONT");
    assert!(
        unready.is_some(),
        "/healthz stayed ready with no healthy server"
    );
    assert!(
        proxy.wait_for_stderr("no upstream server is healthy", Duration::from_secs(1)) || {
            // The log line comes with the first request picked while all are down.
            get(proxy.addr(), "/v2/", Some(USER), &[]).ok();
            true
        }
    );
}

// === failover between two real replicas ===

/// A `docker-registry` on a fixed loopback port, so it can be killed and
/// started again at the same address, sharing storage and `http.secret`.
struct Replica {
    child: Option<Child>,
    addr: SocketAddr,
    config: std::path::PathBuf,
    log: std::path::PathBuf,
}

impl Replica {
    fn start(dir: &Path, name: &str, storage: &Path) -> Replica {
        Self::start_on(dir, name, storage, "127.0.0.1")
    }

    /// On `ip` (an address of this host, e.g. the host end of a veth pair).
    fn start_on(dir: &Path, name: &str, storage: &Path, ip: &str) -> Replica {
        let addr: SocketAddr = format!("{ip}:{}", support::free_port()).parse().unwrap();
        let config = dir.join(format!("{name}.yml"));
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: \"{}\"\n  delete:\n    enabled: true\n  maintenance:\n    uploadpurging:\n      enabled: false\nhttp:\n  addr: {addr}\n  secret: shared-between-replicas\nhealth:\n  storagedriver:\n    enabled: false\n",
                storage.display()
            ),
        )
        .unwrap();
        let mut r = Replica {
            child: None,
            addr,
            config,
            log: dir.join(format!("{name}.access.log")),
        };
        r.restart();
        r
    }

    fn restart(&mut self) {
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.log)
                    .unwrap(),
            )
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let ok = support::wait_for(Duration::from_secs(20), || {
            matches!(get(self.addr, "/v2/", None, &[]), Ok(r) if r.status == 200).then_some(())
        });
        assert!(ok.is_some(), "replica at {} did not start", self.addr);
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn access_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Uploads `data` as a blob of `repo` through `proxy` in three requests on
/// three connections (POST, PATCH, PUT); the upload's `Location`s.
fn monolithic_upload_in_steps(proxy: SocketAddr, repo: &str, data: &[u8]) -> String {
    let digest = sha256_digest(data);
    let r = request(
        proxy,
        "POST",
        &format!("/v2/{repo}/blobs/uploads/"),
        Some(USER),
        &[("Content-Length", "0")],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 202, "{}", r.body_text());
    let loc = r.header("location").unwrap().to_owned();
    let path = loc
        .split_once("://")
        .map_or(loc.as_str(), |(_, rest)| &rest[rest.find('/').unwrap()..])
        .to_owned();
    let len = data.len().to_string();
    let r = request(
        proxy,
        "PATCH",
        &path,
        Some(USER),
        &[
            ("Content-Type", "application/octet-stream"),
            ("Content-Length", &len),
        ],
        data,
    )
    .unwrap();
    assert_eq!(r.status, 202, "{}", r.body_text());
    let loc = r.header("location").unwrap().to_owned();
    let path = loc
        .split_once("://")
        .map_or(loc.as_str(), |(_, rest)| &rest[rest.find('/').unwrap()..])
        .to_owned();
    let sep = if path.contains('?') { '&' } else { '?' };
    let r = request(
        proxy,
        "PUT",
        &format!("{path}{sep}digest={digest}"),
        Some(USER),
        &[("Content-Length", "0")],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 201, "{}", r.body_text());
    digest
}

/// A regbench run in the background as the test user; its JSON report is
/// read when it ends.
struct Bench {
    child: Child,
    json: std::path::PathBuf,
    name: String,
}

impl Bench {
    /// `regbench ARGS URL …` run through `wrapper` (e.g. `ip netns exec
    /// NS`; empty: directly), its output in `dir/NAME.{json,out,err}`.
    fn start(wrapper: &[&str], args: &[&str], url: &str, dir: &Path, name: &str) -> Bench {
        let regbench = support::regbench();
        let mut cmd = match wrapper.split_first() {
            None => Command::new(regbench),
            Some((program, rest)) => {
                let mut cmd = Command::new(program);
                cmd.args(rest).arg(regbench);
                cmd
            }
        };
        let json = dir.join(format!("{name}.json"));
        let child = cmd
            .args(args)
            .args([
                url,
                "--user",
                USER.0,
                "--password",
                USER.1,
                "--timeout",
                "30s",
            ])
            .arg("--json")
            .arg(&json)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join(format!("{name}.out"))).unwrap())
            .stderr(std::fs::File::create(dir.join(format!("{name}.err"))).unwrap())
            .spawn()
            .unwrap();
        Bench {
            child,
            json,
            name: name.to_owned(),
        }
    }

    /// Waits (bounded) for the run to end and returns its report.
    fn report(mut self) -> serde_json::Value {
        let done = support::wait_for(Duration::from_secs(180), || self.child.try_wait().unwrap());
        assert!(done.is_some(), "regbench {} did not finish", self.name);
        serde_json::from_str(&std::fs::read_to_string(&self.json).unwrap()).unwrap()
    }
}

#[test]
fn failover_between_two_replicas_on_shared_storage() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("storage");
    std::fs::create_dir_all(&storage).unwrap();
    let mut a = Replica::start(dir.path(), "a", &storage);
    let b = Replica::start(dir.path(), "b", &storage);
    // One worker: its round-robin tie-break alternates the replicas, so an
    // upload's steps land on both.
    let proxy = two_replica_proxy(dir.path(), a.addr, b.addr, 1);

    // An upload session moving between replicas, pulled back verified.
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let digest = monolithic_upload_in_steps(proxy.addr(), "moving/blob", &data);
    let (la, lb) = (a.access_log(), b.access_log());
    assert!(
        la.contains("/v2/moving/blob/blobs/uploads/")
            && lb.contains("/v2/moving/blob/blobs/uploads/"),
        "the upload did not touch both replicas:\nA:\n{la}\nB:\n{lb}"
    );
    for _ in 0..2 {
        let r = get(
            proxy.addr(),
            &format!("/v2/moving/blob/blobs/{digest}"),
            Some(USER),
            &[],
        )
        .unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(sha256_digest(&r.body), digest);
    }

    // Load: regbench `ci` (8 clients: pulls, pushes, HEADs) and one 1 GiB
    // layer push, while replica a dies and returns.
    let url = format!("http://{}", proxy.addr());
    let bench = |args: &[&str], name: &str| Bench::start(&[], args, &url, dir.path(), name);
    let ci = bench(
        &[
            "ci",
            "-c",
            "8",
            "--duration",
            "16s",
            "--repo-prefix",
            "fo-ci",
        ],
        "ci",
    );
    let push = bench(
        &[
            "push",
            "--blob-size",
            "1GiB",
            "--layers",
            "1",
            "--count",
            "1",
            "-c",
            "1",
            "--repo-prefix",
            "fo-push",
        ],
        "push",
    );
    // Not synchronisation: 5 s of the 16 s load before the kill, so both
    // runs are mid-way (the 1 GiB push with parts on each replica).
    std::thread::sleep(Duration::from_secs(5));
    a.kill();
    let killed = Instant::now();
    let ejected = support::wait_for(Duration::from_secs(10), || {
        (server_metric(&proxy, "up", a.addr) == 0).then(Instant::now)
    })
    .expect("a never left rotation")
    .duration_since(killed);
    // Not synchronisation: a stays down 3 s while the load runs on b.
    std::thread::sleep(Duration::from_secs(3));
    a.restart();
    let restarted = Instant::now();
    let to_a = server_metric(&proxy, "requests_total", a.addr);
    let back = support::wait_for(Duration::from_secs(10), || {
        (server_metric(&proxy, "requests_total", a.addr) > to_a).then(Instant::now)
    })
    .expect("a never received traffic again")
    .duration_since(restarted);
    let (ci, push) = (ci.report(), push.report());
    let count = |r: &serde_json::Value, row: &str, field: &str| r[row][field].as_u64().unwrap();
    let (ci_ok, ci_failed) = (count(&ci, "total", "ok"), count(&ci, "total", "errors"));
    let push_ops_failed: u64 = push["operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["errors"].as_u64().unwrap())
        .sum();
    eprintln!(
        "failover: ci {ci_ok} requests ok, {ci_failed} failed ({}); 1 GiB push: {} requests ok, {push_ops_failed} operations failed; \
         a ejected {ejected:?} after the kill, traffic again {back:?} after the restart",
        ci["errors"],
        count(&push, "total", "ok"),
    );
    if let Ok(path) = std::env::var("REGPROXY_FAILOVER_TIMELINE") {
        let start = killed - Duration::from_secs(5);
        std::fs::write(
            path,
            failover_timeline(&proxy.access_log_text(), a.addr, start, killed, restarted),
        )
        .unwrap();
    }
    assert!(ci_ok > 100, "too little traffic: {ci_ok}");
    // Only requests in flight on a when it died may fail: at most one per
    // ci client, and the push's one request if it was on a.
    assert!(
        ci_failed <= 8,
        "{ci_failed} ci requests failed: {}",
        ci["errors"]
    );
    assert!(push_ops_failed <= 1, "push: {}", push["errors"]);
    assert!(
        ejected <= Duration::from_millis(INTERVAL_MS * FALL) + SLACK,
        "{ejected:?}"
    );
    assert!(
        back <= Duration::from_millis(INTERVAL_MS * RISE) + SLACK,
        "{back:?}"
    );
}

/// Requests per second to each replica and failed answers, from the JSON
/// access log, as a TSV for the bench/README chart.
fn failover_timeline(
    log: &str,
    a: SocketAddr,
    start: Instant,
    killed: Instant,
    restarted: Instant,
) -> String {
    use std::collections::BTreeMap;
    let now_wall = std::time::SystemTime::now();
    let now = Instant::now();
    let offset = |t: Instant| now.duration_since(t).as_secs_f64();
    let mut bins: BTreeMap<i64, (u64, u64, u64)> = BTreeMap::new();
    for line in log.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let Some(time) = v["time"]
            .as_str()
            .and_then(|t| humantime::parse_rfc3339(t).ok())
        else {
            continue;
        };
        let ago = now_wall
            .duration_since(time)
            .map_or(0.0, |d| d.as_secs_f64());
        let second = (offset(start) - ago).floor() as i64;
        let bin = bins.entry(second).or_default();
        match v["upstream"].as_str() {
            _ if v["status"].as_u64().unwrap_or(0) >= 500 => bin.2 += 1,
            Some(up) if up == a.to_string() => bin.0 += 1,
            _ => bin.1 += 1,
        }
    }
    let mut out = format!(
        "# killed at {:.1}s, restarted at {:.1}s\nsecond\tto_a\tto_b\tfailed\n",
        offset(start) - offset(killed),
        offset(start) - offset(restarted)
    );
    for (s, (to_a, to_b, failed)) in bins {
        out.push_str(&format!("{s}\t{to_a}\t{to_b}\t{failed}\n"));
    }
    out
}

// === several regproxy instances behind HAProxy, each its own "host" ===

/// Network namespaces joined to this host by veth pairs: namespace `i` has
/// `10.213.i.2/24`, the host end `10.213.i.1/24`. Deleted on drop.
struct Hosts {
    names: Vec<String>,
}

impl Hosts {
    /// `None` where namespaces cannot be made (not root; a failure under CI).
    fn create(count: usize) -> Option<Hosts> {
        let tag = std::process::id() % 100_000;
        let mut hosts = Hosts { names: Vec::new() };
        for i in 1..=count {
            let ns = format!("rpso{tag}n{i}");
            let (host_if, ns_if) = (format!("rs{tag}h{i}"), format!("rs{tag}n{i}"));
            let steps: Vec<Vec<String>> = vec![
                vec!["netns".into(), "add".into(), ns.clone()],
                vec![
                    "link".into(),
                    "add".into(),
                    host_if.clone(),
                    "type".into(),
                    "veth".into(),
                    "peer".into(),
                    "name".into(),
                    ns_if.clone(),
                ],
                vec![
                    "link".into(),
                    "set".into(),
                    ns_if.clone(),
                    "netns".into(),
                    ns.clone(),
                ],
                vec![
                    "addr".into(),
                    "add".into(),
                    format!("10.213.{i}.1/24"),
                    "dev".into(),
                    host_if.clone(),
                ],
                vec!["link".into(), "set".into(), host_if.clone(), "up".into()],
                vec![
                    "-n".into(),
                    ns.clone(),
                    "addr".into(),
                    "add".into(),
                    format!("10.213.{i}.2/24"),
                    "dev".into(),
                    ns_if.clone(),
                ],
                vec![
                    "-n".into(),
                    ns.clone(),
                    "link".into(),
                    "set".into(),
                    ns_if.clone(),
                    "up".into(),
                ],
                vec![
                    "-n".into(),
                    ns.clone(),
                    "link".into(),
                    "set".into(),
                    "lo".into(),
                    "up".into(),
                ],
            ];
            for (k, step) in steps.iter().enumerate() {
                let out = Command::new("ip").args(step).output();
                let ok = matches!(&out, Ok(o) if o.status.success());
                if k == 0 && ok {
                    hosts.names.push(ns.clone());
                }
                if !ok {
                    support::skip_unless_ci(
                        &format!(
                            "cannot build network namespaces here (ip {}): {:?}",
                            step.join(" "),
                            out.map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
                        ),
                        "run as root, with iproute2 (apt-get install iproute2)",
                    );
                    return None;
                }
            }
        }
        Some(hosts)
    }

    fn name(&self, i: usize) -> &str {
        &self.names[i - 1]
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        // Deleting a namespace deletes its veth end, and with it the pair.
        for ns in &self.names {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// regproxy run inside namespace `ns`; killed by PID (`ip netns exec`
/// execs it, so the PID is regproxy's) on drop.
struct NsProxy {
    child: Option<Child>,
    log: std::path::PathBuf,
}

impl NsProxy {
    fn start(ns: &str, dir: &Path, config: &str) -> NsProxy {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("regproxy.toml"), config).unwrap();
        let log = dir.join("access.log");
        let child = Command::new("ip")
            .args(["netns", "exec", ns, support::proxy::bin(), "--config"])
            .arg(dir.join("regproxy.toml"))
            .current_dir(dir)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(dir.join("regproxy.stderr")).unwrap())
            .spawn()
            .unwrap();
        let stderr = dir.join("regproxy.stderr");
        let up = support::wait_for(Duration::from_secs(20), || {
            std::fs::read_to_string(&stderr)
                .ok()?
                .contains("listening")
                .then_some(())
        });
        assert!(
            up.is_some(),
            "regproxy in {ns} did not start: {}",
            std::fs::read_to_string(&stderr).unwrap_or_default()
        );
        NsProxy {
            child: Some(child),
            log,
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Client addresses of the requests logged (HAProxy's own health
    /// checks, which open and close a connection with a LOCAL header, are
    /// logged as `"- -"` from HAProxy's address and left out).
    fn clients(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| is_request(l))
            .filter_map(|l| l.split_whitespace().nth(1).map(str::to_owned))
            .collect()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Requests logged (HAProxy's health checks left out).
    fn requests(&self) -> usize {
        self.log_text()
            .lines()
            .filter(|l| l.contains(" HTTP/1.1\" "))
            .count()
    }
}

/// A text access-log line of a request, not of a connection that closed
/// before one (HAProxy's health checks, logged as `"- - …"`).
fn is_request(line: &str) -> bool {
    line.contains(" HTTP/1.1\" ") && !line.contains("\"- - ")
}

impl Drop for NsProxy {
    fn drop(&mut self) {
        self.kill();
    }
}

#[test]
fn two_regproxies_behind_haproxy_send_proxy_v2_one_killed_mid_run() {
    let Some(hosts) = Hosts::create(3) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    users(dir.path());
    let storage = dir.path().join("storage");
    std::fs::create_dir_all(&storage).unwrap();
    // Hosts 1 and 2 run a regproxy each, reaching a registry replica on
    // their host end; host 3 is where the clients are.
    let r1 = Replica::start_on(dir.path(), "r1", &storage, "10.213.1.1");
    let r2 = Replica::start_on(dir.path(), "r2", &storage, "10.213.2.1");
    let proxy_conf = |i: usize, upstream: SocketAddr| {
        format!(
            "listen = \"10.213.{i}.2:5043\"\nworkers = 1\nshutdown_timeout = \"2s\"\nproxy_protocol = \"v2\"\n[auth]\nhtpasswd = \"{users}\"\n[upstream]\nservers = [\"{upstream}\"]\n[forwarding]\ntrusted_proxies = [\"10.213.{i}.1\"]\n",
            users = dir.path().join("proxy/users").display()
        )
    };
    let mut p1 = NsProxy::start(
        hosts.name(1),
        &dir.path().join("p1"),
        &proxy_conf(1, r1.addr),
    );
    let p2 = NsProxy::start(
        hosts.name(2),
        &dir.path().join("p2"),
        &proxy_conf(2, r2.addr),
    );
    let port = support::free_port();
    let Some(_haproxy) = Haproxy::start(
        dir.path(),
        &format!(
            "global\n  maxconn 256\ndefaults\n  mode tcp\n  timeout connect 2s\n  timeout client 30s\n  timeout server 30s\n  retries 3\n  option redispatch\n\
             listen front\n  bind 10.213.3.1:{port}\n  balance roundrobin\n\
               server p1 10.213.1.2:5043 send-proxy-v2 check inter 200ms fall 1 rise 2\n\
               server p2 10.213.2.2:5043 send-proxy-v2 check inter 200ms fall 1 rise 2\n"
        ),
    ) else {
        return;
    };
    let front: SocketAddr = format!("10.213.3.1:{port}").parse().unwrap();
    wait_listening(front);

    // regbench ci (8 clients) and pull (4) on host 3, through HAProxy.
    let url = format!("http://{front}");
    let in_host_3 = ["ip", "netns", "exec", hosts.name(3)];
    let bench = |args: &[&str], name: &str| Bench::start(&in_host_3, args, &url, dir.path(), name);
    let runs = [
        bench(
            &[
                "ci",
                "-c",
                "8",
                "--duration",
                "12s",
                "--repo-prefix",
                "l4-ci",
            ],
            "ci",
        ),
        bench(
            &[
                "pull",
                "-c",
                "4",
                "--duration",
                "12s",
                "--blob-size",
                "1MiB",
                "--repo-prefix",
                "l4-pull",
            ],
            "pull",
        ),
    ];
    // Kill instance 1 once it has served some of the run.
    let served = support::wait_for(Duration::from_secs(30), || {
        (p1.requests() >= 200).then_some(())
    });
    assert!(served.is_some(), "instance 1 got no traffic");
    p1.kill();
    let killed_after = p1.requests();
    let mut totals = (0, 0);
    for run in runs {
        let r = run.report();
        let (ok, failed) = (
            r["total"]["ok"].as_u64().unwrap(),
            r["total"]["errors"].as_u64().unwrap(),
        );
        eprintln!(
            "L4 run, {}: {ok} ok, {failed} failed {}",
            r["scenario"], r["errors"]
        );
        totals = (totals.0 + ok, totals.1 + failed);
    }
    let (c1, c2) = (p1.clients(), p2.clients());
    eprintln!(
        "L4 run: {} ok, {} failed; instance 1 served {killed_after} requests before it was killed, instance 2 {}",
        totals.0,
        totals.1,
        p2.requests()
    );
    assert!(totals.0 > 500, "too little traffic");
    // Only connections on the killed instance may fail: at most one
    // request in flight on each of the 12 clients' connections.
    assert!(totals.1 <= 12, "{} failed", totals.1);
    assert!(
        p2.requests() > killed_after,
        "new connections went to the survivor"
    );
    // The access logs name the clients' host, not HAProxy's address.
    let strangers: Vec<&String> = c1
        .iter()
        .chain(&c2)
        .filter(|c| *c != "10.213.3.2")
        .collect();
    assert!(
        strangers.is_empty(),
        "logged clients other than host 3: {strangers:?}"
    );
    drop(r1);
    drop(r2);
}
