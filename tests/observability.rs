//! Observability end to end: the JSON access log's fields for a pull, a
//! chunked-PATCH push, a cross-repository mount, a refused push and a 401,
//! all through the real registry and real clients (skopeo, curl); the
//! request id rule; histogram counts after known traffic; every metric the
//! Grafana dashboard queries present in a real scrape; and
//! `regbench report` on the log of a real run.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::http;
use support::origin::{self, Origin, Step};
use support::proxy::Proxy;
use support::registry::Registry;
use support::skopeo::{docker_ref, make_image_dir, sha256_digest, skopeo_copy, CopyOpts};
use support::stack::{PlainStack, TlsStack};
use support::tls::Tls;

const WAIT: Duration = Duration::from_secs(15);
const PUSHER: (&str, &str) = ("pusher", "pusherpassword");
const READER: (&str, &str) = ("reader", "readerpassword");
const MANIFEST_V2: &str = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json";

/// A TLS regproxy with a JSON access log in front of the real registry.
type Stack = TlsStack;

fn stack() -> Stack {
    let tail =
        "[log]\nformat = \"json\"\n[admin]\nlisten = \"127.0.0.1:0\"\ntop_repositories = 5\n";
    TlsStack::start(&[PUSHER, READER], "push_users = [\"pusher\"]", tail)
}

impl Stack {
    /// The JSON lines logged so far; panics on a line that is not JSON.
    fn lines(&self) -> Vec<Value> {
        self.proxy
            .access_log_text()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    /// Waits for the line of request `id`.
    fn line_of(&self, id: &str) -> Value {
        support::wait_for(WAIT, || {
            self.lines().into_iter().find(|l| l["request_id"] == id)
        })
        .unwrap_or_else(|| panic!("no log line for {id}:\n{}", self.proxy.access_log_text()))
    }

    /// Waits for a line with `method`, a path ending in `suffix`, `status`.
    fn line_like(&self, method: &str, suffix: &str, status: u16) -> Value {
        support::wait_for(WAIT, || {
            self.lines().into_iter().find(|l| {
                l["method"] == method
                    && l["status"] == status
                    && l["path"].as_str().is_some_and(|p| p.ends_with(suffix))
            })
        })
        .unwrap_or_else(|| {
            panic!(
                "no {method} …{suffix} {status} line:\n{}",
                self.proxy.access_log_text()
            )
        })
    }
}

/// The fields every line has, checked on `l`.
fn assert_common(l: &Value, method: &str) {
    let time = l["time"].as_str().unwrap();
    assert!(
        time.len() == 24 && time.ends_with('Z') && time.as_bytes()[10] == b'T',
        "{l}"
    );
    assert_eq!(l["client"], "127.0.0.1", "{l}");
    assert_eq!(l["method"], method, "{l}");
    assert!(l["path"].as_str().unwrap().starts_with("/v2/"), "{l}");
    assert!(!l["path"].as_str().unwrap().contains('?'), "{l}");
    assert!(l["duration_ms"].as_f64().unwrap() >= 0.0, "{l}");
    assert!(l["bytes_in"].is_u64() && l["bytes_out"].is_u64(), "{l}");
    assert!(!l["request_id"].as_str().unwrap().is_empty(), "{l}");
    assert_eq!(l["tls"], "TLSv1.3", "{l}");
    assert!(l["user_agent"].is_string(), "{l}");
}

/// A forwarded request's registry fields.
fn assert_forwarded(l: &Value, registry: &Registry) {
    assert_eq!(l["upstream"], registry.addr().to_string(), "{l}");
    let ttfb = l["upstream_ttfb_ms"].as_f64().unwrap();
    assert!(
        ttfb >= 0.0 && ttfb <= l["duration_ms"].as_f64().unwrap(),
        "{l}"
    );
    assert!(l.get("error").is_none(), "{l}");
}

/// A request regproxy answered itself.
fn assert_not_forwarded(l: &Value) {
    assert!(l.get("upstream").is_none(), "{l}");
    assert!(l.get("upstream_ttfb_ms").is_none(), "{l}");
    assert!(!l["error"].as_str().unwrap().is_empty(), "{l}");
}

/// curl's `PATCH` of `body` to `url` with `Transfer-Encoding: chunked`;
/// returns the status and the `Location` it answered.
fn curl_chunked_patch(tls: &Tls, url: &str, user: (&str, &str), body: &Path) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-D", "-", "-X", "PATCH"])
        .arg("--cacert")
        .arg(tls.ca_cert())
        .args(["-u", &format!("{}:{}", user.0, user.1)])
        .args(["-H", "Transfer-Encoding: chunked"])
        .args(["-H", "Content-Type: application/octet-stream"])
        .arg("--data-binary")
        .arg(format!("@{}", body.display()))
        .arg(url)
        .output()
        .expect("run curl");
    let head = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "curl: {head}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let location = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("location")
                .then(|| v.trim().to_owned())
        })
        .unwrap_or_default();
    (status, location)
}

#[test]
fn json_log_fields_for_pull_push_mount_refusal_and_401() {
    let s = stack();

    // A push by skopeo, so there is an image to pull and a layer to mount.
    let image = make_image_dir(&s.dir.path().join("image"), &[64 * 1024, 32 * 1024]);
    let opts = CopyOpts::push(&s.tls.cert_dir_for_skopeo(), PUSHER.0, PUSHER.1);
    skopeo_copy(
        &image.reference(),
        &docker_ref(s.proxy.addr(), "team/app", "v1"),
        &opts,
    )
    .assert_success();
    let put = s.line_like("PUT", "/v2/team/app/manifests/v1", 201);
    assert_common(&put, "PUT");
    assert_forwarded(&put, &s.registry);
    assert_eq!(put["action"], "push", "{put}");
    assert_eq!(put["repository"], "team/app", "{put}");
    assert_eq!(put["tag"], "v1", "{put}");
    assert_eq!(put["user"], "pusher", "{put}");
    assert!(put["bytes_in"].as_u64().unwrap() > 0, "{put}");
    assert!(
        put["user_agent"].as_str().unwrap().contains("skopeo"),
        "{put}"
    );

    // A push with a chunked PATCH, by curl.
    let blob: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let blob_path = s.dir.path().join("blob");
    std::fs::write(&blob_path, &blob).unwrap();
    let digest = sha256_digest(&blob);
    let start = http::request(
        s.ep(),
        "POST",
        "/v2/team/app/blobs/uploads/",
        Some(PUSHER),
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(start.status, 202, "{start:?}");
    let upload = start.header("location").unwrap().to_owned();
    let url = if upload.starts_with("http") {
        upload.clone()
    } else {
        format!("https://{}{upload}", s.proxy.addr())
    };
    let (status, after) = curl_chunked_patch(&s.tls, &url, PUSHER, &blob_path);
    assert_eq!(status, 202, "PATCH");
    let patch = s.line_like("PATCH", http::path_of(&url).split('?').next().unwrap(), 202);
    assert_common(&patch, "PATCH");
    assert_forwarded(&patch, &s.registry);
    assert_eq!(patch["action"], "push", "{patch}");
    assert_eq!(patch["repository"], "team/app", "{patch}");
    assert_eq!(patch["bytes_in"], blob.len() as u64, "{patch}");
    assert_eq!(patch["user"], "pusher", "{patch}");
    assert!(
        patch["user_agent"].as_str().unwrap().starts_with("curl/"),
        "{patch}"
    );
    assert!(
        patch.get("digest").is_none() && patch.get("tag").is_none(),
        "{patch}"
    );
    let finish = format!(
        "{}&digest={}",
        http::path_of(&after),
        digest.replace(':', "%3A")
    );
    let done = http::request(s.ep(), "PUT", &finish, Some(PUSHER), &[], b"").unwrap();
    assert_eq!(done.status, 201, "{done:?}");
    let put_blob = s.line_of(done.header("x-request-id").unwrap());
    assert_eq!(
        put_blob["digest"],
        digest.as_str(),
        "digest decoded from the query: {put_blob}"
    );

    // A pull: manifest by tag, then a blob by digest.
    let pull = http::get(
        s.ep(),
        "/v2/team/app/manifests/v1",
        Some(READER),
        &[("Accept", MANIFEST_V2)],
    )
    .unwrap();
    assert_eq!(pull.status, 200, "{pull:?}");
    let ids = pull.header_all("x-request-id");
    assert_eq!(ids.len(), 1, "one id in the answer: {pull:?}");
    let l = s.line_of(ids[0]);
    assert_common(&l, "GET");
    assert_forwarded(&l, &s.registry);
    assert_eq!(l["action"], "pull", "{l}");
    assert_eq!(l["repository"], "team/app", "{l}");
    assert_eq!(l["tag"], "v1", "{l}");
    assert_eq!(l["user"], "reader", "{l}");
    assert_eq!(l["status"], 200, "{l}");
    assert_eq!(l["bytes_out"], pull.body.len() as u64, "{l}");
    assert_eq!(l["bytes_in"], 0, "{l}");
    let layer = &image.layers[0].digest;
    let blob_get = http::get(
        s.ep(),
        &format!("/v2/team/app/blobs/{layer}"),
        Some(READER),
        &[],
    )
    .unwrap();
    assert_eq!(blob_get.status, 200);
    let l = s.line_of(blob_get.header("x-request-id").unwrap());
    assert_eq!(l["digest"], layer.as_str(), "{l}");
    assert_eq!(l["bytes_out"], image.layers[0].size, "{l}");

    // A cross-repository mount.
    let mount = http::request(
        s.ep(),
        "POST",
        &format!("/v2/other/app/blobs/uploads/?mount={layer}&from=team/app"),
        Some(PUSHER),
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(mount.status, 201, "{mount:?}");
    let l = s.line_of(mount.header("x-request-id").unwrap());
    assert_common(&l, "POST");
    assert_forwarded(&l, &s.registry);
    assert_eq!(l["action"], "mount", "{l}");
    assert_eq!(l["repository"], "other/app", "{l}");
    assert_eq!(l["mount_from"], "team/app", "{l}");
    assert_eq!(l["digest"], layer.as_str(), "{l}");
    assert_eq!(l["path"], "/v2/other/app/blobs/uploads/", "{l}");

    // A refused push: the reader may only pull.
    let refused = http::request(
        s.ep(),
        "POST",
        "/v2/team/app/blobs/uploads/",
        Some(READER),
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(refused.status, 403);
    let l = s.line_of(refused.header("x-request-id").unwrap());
    assert_common(&l, "POST");
    assert_not_forwarded(&l);
    assert_eq!(l["action"], "push", "{l}");
    assert_eq!(l["repository"], "team/app", "{l}");
    assert_eq!(l["user"], "reader", "{l}");
    assert_eq!(l["status"], 403, "{l}");

    // A 401: no credentials.
    let anon = http::get(s.ep(), "/v2/team/app/manifests/v1", None, &[]).unwrap();
    assert_eq!(anon.status, 401);
    let l = s.line_of(anon.header("x-request-id").unwrap());
    assert_common(&l, "GET");
    assert_not_forwarded(&l);
    assert!(l.get("user").is_none(), "{l}");
    assert_eq!(l["action"], "pull", "{l}");
    assert_eq!(l["tag"], "v1", "{l}");
    assert_eq!(l["status"], 401, "{l}");

    // No balancer is trusted here: a client's id is replaced.
    let forged = http::get(
        s.ep(),
        "/v2/",
        Some(READER),
        &[("X-Request-ID", "forged-1")],
    )
    .unwrap();
    let id = forged.header("x-request-id").unwrap().to_owned();
    assert_ne!(id, "forged-1");
    assert_eq!(s.line_of(&id)["action"], "ping");

    // Nothing was dropped; the opt-in top list names the repositories.
    assert_eq!(s.proxy.metric("regproxy_access_log_dropped_total"), 0);
    let top = support::wait_for(WAIT, || {
        let text = scrape(&s.proxy);
        text.contains("regproxy_top_repository_requests_total{repository=\"team/app\"}")
            .then_some(text)
    });
    assert!(
        top.is_some(),
        "team/app not in the top list:\n{}",
        scrape(&s.proxy)
    );

    // `regbench report` on this very log.
    let out = Command::new(support::regbench())
        .arg("report")
        .arg(s.proxy.workdir().join("regproxy.stdout"))
        .output()
        .expect("run regbench report");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{table}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "\npush ",
        "\npull ",
        "\nmount ",
        "\nping ",
        "\ntotal ",
        "team/app",
        "other/app",
    ] {
        assert!(table.contains(want), "no {want:?} in\n{table}");
    }
    assert!(
        table.contains("  401 ") && table.contains("  403 "),
        "{table}"
    );
    let rows: BTreeMap<&str, &str> = table.lines().filter_map(|l| l.split_once(' ')).collect();
    let mount_row: Vec<&str> = rows["mount"].split_whitespace().collect();
    assert_eq!(mount_row[..2], ["1", "0"], "one mount, no errors: {table}");
}

/// A plain regproxy in front of a fake origin that records headers; the
/// request id rule with and without a trusted balancer.
#[test]
fn request_ids_from_trusted_balancers_only_and_forwarded_once() {
    let dir = tempfile::tempdir().unwrap();
    support::write_htpasswd(&dir.path().join("users"), &[READER]);
    let origin = Origin::start(|_| vec![Step::Write(origin::response(200, &[], b"{}"))]);
    let start = |name: &str, trusted: &str| {
        let config = format!(
            r#"listen = "127.0.0.1:0"
[auth]
htpasswd = "../users"
[upstream]
servers = ["{}"]
[forwarding]
trust_forwarded_headers = true
trusted_proxies = ["{trusted}"]
"#,
            origin.addr()
        );
        Proxy::start(&config, &dir.path().join(name))
    };
    let trusting = start("trusting", "127.0.0.1/32");
    let other = start("other", "192.0.2.0/24");
    let ask = |p: &Proxy, id: &str| {
        let r = http::get(p.addr(), "/v2/", Some(READER), &[("X-Request-ID", id)]).unwrap();
        assert_eq!(r.status, 200, "{r:?}");
        let back = r.header_all("x-request-id");
        assert_eq!(back.len(), 1, "{r:?}");
        let seen = origin.requests().last().unwrap().clone();
        let sent = seen.header_all("x-request-id");
        assert_eq!(sent.len(), 1, "forwarded once: {seen:?}");
        assert_eq!(sent[0], back[0], "the registry sees the id the client gets");
        back[0].to_owned()
    };
    assert_eq!(ask(&trusting, "lb-42"), "lb-42");
    let long = "x".repeat(201);
    assert_ne!(ask(&trusting, &long), long, "over 200 bytes: replaced");
    assert_ne!(ask(&trusting, "a b"), "a b", "not visible ASCII: replaced");
    assert_ne!(ask(&other, "lb-43"), "lb-43", "untrusted peer: replaced");
    // The text log carries the id too.
    let lines = trusting.wait_for_access_lines(3, WAIT);
    assert!(
        lines.iter().any(|l| l.ends_with(" request_id=lb-42")),
        "{lines:?}"
    );
    // `regbench report` reads the text format too.
    let out = Command::new(support::regbench())
        .arg("report")
        .arg(trusting.workdir().join("regproxy.stdout"))
        .output()
        .expect("run regbench report");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{table}");
    let ping: Vec<&str> = table
        .lines()
        .find(|l| l.starts_with("ping "))
        .unwrap_or_else(|| panic!("no ping row:\n{table}"))
        .split_whitespace()
        .collect();
    assert_eq!(ping[1..3], ["3", "0"], "{table}");
}

/// Sample lines of `/metrics`: (name, labels, value).
fn samples(text: &str) -> Vec<(String, String, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            Some((name.to_owned(), labels.to_owned(), value.parse().ok()?))
        })
        .collect()
}

fn scrape(p: &Proxy) -> String {
    http::get(p.admin_addr(), "/metrics", None, &[])
        .unwrap()
        .body_text()
}

/// A plain regproxy with an admin port in front of the real registry.
fn plain_stack(admin: &str) -> PlainStack {
    PlainStack::start(&support::htpasswd_text(&[READER]), "", "", admin)
}

#[test]
fn histogram_counts_match_known_traffic() {
    let s = plain_stack("");
    let proxy = &s.proxy;
    let (pings, pulls, refused) = (7u64, 4u64, 3u64);
    for _ in 0..pings {
        assert_eq!(
            http::get(proxy.addr(), "/v2/", Some(READER), &[])
                .unwrap()
                .status,
            200
        );
    }
    for _ in 0..pulls {
        let r = http::get(proxy.addr(), "/v2/missing/app/tags/list", Some(READER), &[]).unwrap();
        assert_eq!(r.status, 404, "the registry's NAME_UNKNOWN");
    }
    for _ in 0..refused {
        assert_eq!(
            http::get(proxy.addr(), "/v2/", None, &[]).unwrap().status,
            401
        );
    }
    let total = pings + pulls + refused;
    // A request is counted just after its answer went out: wait for all.
    let count = |text: &str, name: &str, labels: &str| {
        samples(text)
            .into_iter()
            .find(|(n, l, _)| n == name && l == labels)
            .map_or(0, |(_, _, v)| v as u64)
    };
    let text = support::wait_for(WAIT, || {
        let text = scrape(proxy);
        let all: f64 = samples(&text)
            .iter()
            .filter(|(n, _, _)| n == "regproxy_request_duration_seconds_count")
            .map(|(_, _, v)| v)
            .sum();
        (all as u64 == total).then_some(text)
    })
    .unwrap_or_else(|| panic!("counts never reached {total}:\n{}", scrape(proxy)));
    let d = "regproxy_request_duration_seconds_count";
    let t = "regproxy_upstream_ttfb_seconds_count";
    assert_eq!(count(&text, d, r#"action="ping",status="2xx""#), pings);
    assert_eq!(count(&text, d, r#"action="pull",status="4xx""#), pulls);
    assert_eq!(count(&text, d, r#"action="ping",status="4xx""#), refused);
    assert_eq!(count(&text, t, r#"action="ping",status="2xx""#), pings);
    assert_eq!(count(&text, t, r#"action="pull",status="4xx""#), pulls);
    assert_eq!(
        count(&text, t, r#"action="ping",status="4xx""#),
        0,
        "never forwarded"
    );
    assert_eq!(proxy.metric("regproxy_requests_total"), total);

    // Every series: buckets never decrease, +Inf is the count, and the
    // bounds are the documented ones.
    for family in [
        "regproxy_request_duration_seconds",
        "regproxy_upstream_ttfb_seconds",
        "regproxy_upstream_server_response_seconds",
    ] {
        let mut by_labels: BTreeMap<String, Vec<(String, f64)>> = BTreeMap::new();
        for (name, labels, v) in samples(&text) {
            if name == format!("{family}_bucket") {
                let (rest, le) = labels.rsplit_once(",le=").unwrap();
                by_labels
                    .entry(rest.to_owned())
                    .or_default()
                    .push((le.trim_matches('"').to_owned(), v));
            }
        }
        assert!(!by_labels.is_empty(), "{family}: no buckets");
        for (labels, buckets) in by_labels {
            let les: Vec<&str> = buckets.iter().map(|(le, _)| le.as_str()).collect();
            assert_eq!(les.first(), Some(&"0.001"), "{family}{{{labels}}}");
            assert_eq!(les.last(), Some(&"+Inf"), "{family}{{{labels}}}");
            assert!(
                buckets.windows(2).all(|w| w[0].1 <= w[1].1),
                "{family}{{{labels}}} not monotonic: {buckets:?}"
            );
            let inf = buckets.last().unwrap().1 as u64;
            assert_eq!(
                inf,
                count(&text, &format!("{family}_count"), &labels),
                "{family}{{{labels}}}"
            );
        }
    }
    // Per server: every forwarded request's response head, none refused.
    let server = format!("server=\"{}\"", s.registry.addr());
    assert_eq!(
        count(
            &text,
            "regproxy_upstream_server_response_seconds_count",
            &server
        ),
        pings + pulls,
        "{text}"
    );
    // Bytes by action: the pings' `{}` bodies.
    let ping_bytes = count(
        &text,
        "regproxy_response_body_bytes_by_action_total",
        r#"action="ping""#,
    );
    assert_eq!(ping_bytes, 2 * pings, "{text}");
}

/// A registry that stalls shows in its server's upper latency buckets, as
/// a sum alone would hide: four quick answers and one held back 700 ms.
#[test]
fn a_stalled_registry_answer_lands_in_its_servers_upper_buckets() {
    let s = plain_stack("");
    let proxy = &s.proxy;
    for _ in 0..4 {
        let r = http::get(proxy.addr(), "/v2/", Some(READER), &[]).unwrap();
        assert_eq!(r.status, 200);
    }
    support::cmd::signal(s.registry.pid(), "STOP");
    let addr = proxy.addr();
    let slow = std::thread::spawn(move || http::get(addr, "/v2/", Some(READER), &[]));
    // The 700 ms count from when the request is on the server, however
    // late the thread got there.
    let server = format!("server=\"{}\"", s.registry.addr());
    let in_flight = support::wait_for(WAIT, || {
        samples(&scrape(proxy))
            .iter()
            .any(|(n, l, v)| {
                n == "regproxy_upstream_server_outstanding" && *l == server && *v == 1.0
            })
            .then_some(())
    });
    assert!(in_flight.is_some(), "the request never reached the server");
    // Not synchronisation: the stopped registry holds the request 700 ms,
    // the duration the histogram must then file it under.
    std::thread::sleep(Duration::from_millis(700));
    support::cmd::signal(s.registry.pid(), "CONT");
    assert_eq!(slow.join().unwrap().unwrap().status, 200);

    let bucket = |text: &str, le: &str| {
        let labels = format!("{server},le=\"{le}\"");
        samples(text)
            .into_iter()
            .find(|(n, l, _)| {
                n == "regproxy_upstream_server_response_seconds_bucket" && *l == labels
            })
            .map(|(_, _, v)| v as u64)
    };
    let text = scrape(proxy);
    assert_eq!(bucket(&text, "+Inf"), Some(5), "{text}");
    assert_eq!(
        bucket(&text, "0.5"),
        Some(4),
        "the stalled answer is slower: {text}"
    );
    let sum = samples(&text)
        .into_iter()
        .find(|(n, l, _)| n == "regproxy_upstream_server_response_seconds_sum" && *l == server)
        .map(|(_, _, v)| v);
    assert!(sum.is_some_and(|v| v >= 0.7), "{text}");
}

/// Every `regproxy_*` name in the dashboard's PromQL.
fn dashboard_metric_names() -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/regproxy-dashboard.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut names = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            let mut rest = expr;
            while let Some(i) = rest.find("regproxy_") {
                let tail = &rest[i..];
                let end = tail
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(tail.len());
                names.push(tail[..end].to_owned());
                rest = &tail[end..];
            }
        }
    }
    names.sort();
    names.dedup();
    names
}

#[test]
fn every_dashboard_metric_exists_in_a_real_scrape() {
    let names = dashboard_metric_names();
    assert!(names.len() >= 15, "{names:?}");
    let s = plain_stack("top_repositories = 3");
    let proxy = &s.proxy;
    // Traffic that makes every labelled family appear: pings (twice with
    // the same credentials: a cache hit), a pull the registry answers.
    for _ in 0..3 {
        http::get(proxy.addr(), "/v2/", Some(READER), &[]).unwrap();
    }
    http::get(proxy.addr(), "/v2/some/repo/tags/list", Some(READER), &[]).unwrap();
    let missing = |text: &str| -> Vec<String> {
        let present: Vec<String> = samples(text).into_iter().map(|(n, _, _)| n).collect();
        names
            .iter()
            .filter(|n| !present.contains(n))
            .cloned()
            .collect()
    };
    let ok = support::wait_for(WAIT, || missing(&scrape(proxy)).is_empty().then_some(()));
    let text = scrape(proxy);
    assert!(
        ok.is_some(),
        "not in /metrics: {:?}\n{text}",
        missing(&text)
    );
    assert!(
        proxy.metric("regproxy_auth_cache_hits_total") >= 2,
        "{text}"
    );
}
