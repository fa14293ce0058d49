//! Access control end to end, against the real registry: per-team
//! namespaces and anonymous pulls with skopeo through TLS, htgroup files,
//! hot reload (SIGHUP, file change, broken sets), the brute-force limit,
//! TLS certificate rotation, every htpasswd format made by the real tools,
//! and `regproxy check`.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::http::{self, Conn, Endpoint, RawResponse};
use support::proxy::Proxy;
use support::registry::Registry;
use support::skopeo::{
    docker_ref, make_image_dir, pulled_layer_digests, sha256_file, skopeo_copy, verify_dir_blobs,
    CopyOpts, ImageDir,
};
use support::stack::{self, TlsStack};
use support::tls::Tls;

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
/// Longest wait for a reload or a log line; every wait polls and ends early.
const WAIT: Duration = Duration::from_secs(15);

/// A registry, a TLS regproxy in front of it, and the test's files.
type Stack = TlsStack;

impl Stack {
    fn status(&self, method: &str, path: &str, creds: Option<(&str, &str)>) -> u16 {
        send(&self.ep(), method, path, creds).status
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    /// skopeo push of `image` to `repo:tag` as `user`.
    fn push(&self, image: &ImageDir, repo: &str, tag: &str, user: (&str, &str)) -> bool {
        let opts = CopyOpts::push(&self.tls.cert_dir_for_skopeo(), user.0, user.1);
        let dest = docker_ref(self.proxy.addr(), repo, tag);
        let r = skopeo_copy(&image.reference(), &dest, &opts);
        if !r.success() {
            eprintln!("skopeo push to {dest} failed:\n{}", r.stderr);
        }
        r.success()
    }

    /// skopeo push that must fail with the registry's `denied`, leaving the
    /// registry without a new blob and without any upload request.
    fn push_denied(&self, image: &ImageDir, repo: &str, user: (&str, &str)) {
        let blobs = self.registry.blob_count();
        let seen = self.registry.settle(Duration::from_millis(200));
        let opts = CopyOpts::push(&self.tls.cert_dir_for_skopeo(), user.0, user.1);
        let dest = docker_ref(self.proxy.addr(), repo, "denied");
        let r = skopeo_copy(&image.reference(), &dest, &opts);
        let stderr = r.assert_failure();
        assert!(stderr.contains("denied"), "{repo}: {stderr}");
        let upload = format!(
            "{} \"POST /v2/{repo}/blobs/uploads/ HTTP/1.1\" 403 ",
            user.0
        );
        assert!(self.wait_access(&upload), "no 403 for {upload}");
        assert_eq!(self.registry.blob_count(), blobs, "a blob was stored");
        for blob in image.layers.iter().chain([&image.config]) {
            assert!(!self.registry.has_blob(&blob.digest), "{}", blob.digest);
        }
        self.registry.settle(Duration::from_millis(300));
        let writes: Vec<_> = self.registry.requests()[seen..]
            .iter()
            .filter(|r| !matches!(r.method.as_str(), "GET" | "HEAD") || r.uri.contains("/uploads"))
            .cloned()
            .collect();
        assert!(writes.is_empty(), "reached the registry: {writes:?}");
    }

    /// Waits for an access-log line containing `needle`.
    fn wait_access(&self, needle: &str) -> bool {
        support::wait_for(WAIT, || {
            self.proxy.access_log_text().contains(needle).then_some(())
        })
        .is_some()
    }

    /// How many times stderr says `needle`.
    fn count_stderr(&self, needle: &str) -> usize {
        self.proxy.stderr_text().matches(needle).count()
    }

    /// Waits until stderr says `needle` more than `before` times.
    fn wait_stderr_count(&self, needle: &str, before: usize) -> bool {
        support::wait_for(WAIT, || (self.count_stderr(needle) > before).then_some(())).is_some()
    }
}

/// One `[[access]]` table.
fn rule(repository: &str, who: &[&str], actions: &[&str]) -> String {
    let list = |xs: &[&str]| {
        xs.iter()
            .map(|x| format!("\"{x}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "\n[[access]]\nrepository = \"{repository}\"\nwho = [{}]\nactions = [{}]\n",
        list(who),
        list(actions)
    )
}

/// Manifest types a pull accepts (the registry answers 404 to a client
/// that cannot take an OCI manifest).
const ACCEPT: (&str, &str) = (
    "Accept",
    "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json",
);

fn send(ep: &Endpoint, method: &str, path: &str, creds: Option<(&str, &str)>) -> RawResponse {
    http::request(ep, method, path, creds, &[ACCEPT], b"").unwrap()
}

/// Writes `text` to `path` through a rename, as editors and tools do.
fn replace_file(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn htpasswd_text(users: &[(&str, &str)]) -> String {
    users
        .iter()
        .map(|(u, p)| support::htpasswd_bcrypt(u, p) + "\n")
        .collect()
}

fn image(work: &Path, name: &str) -> ImageDir {
    make_image_dir(&work.join(name), &[MIB, 64 * KIB])
}

/// Pulls `repo:tag` into `dir` with `opts` and checks it is `want`,
/// byte for byte.
fn pull_matches(s: &Stack, repo: &str, want: &ImageDir, dir: &Path, opts: &CopyOpts) {
    let src = docker_ref(s.proxy.addr(), repo, "v1");
    skopeo_copy(&src, &format!("dir:{}", dir.display()), opts).assert_success();
    verify_dir_blobs(dir).unwrap();
    assert_eq!(pulled_layer_digests(dir), want.layer_digests());
    assert_eq!(
        sha256_file(&dir.join("manifest.json")),
        want.manifest_digest
    );
}

const ALICE: (&str, &str) = ("alice", "alice-pw");
const BOB: (&str, &str) = ("bob", "bob-pw");
const CAROL: (&str, &str) = ("carol", "carol-pw");

fn upload(repo: &str) -> String {
    format!("/v2/{repo}/blobs/uploads/")
}

#[test]
fn team_namespaces_push_own_pull_all_and_store_nothing_when_denied() {
    let tail = String::from("[groups]\nteam-a = [\"alice\"]\nteam-b = [\"bob\"]\n")
        + &rule("team-a/**", &["@team-a"], &["pull", "push"])
        + &rule("team-b/**", &["@team-b"], &["pull", "push"])
        + &rule("**", &["authenticated"], &["pull"]);
    let s = Stack::start(&[ALICE, BOB], "", &tail);
    let work = tempfile::tempdir().unwrap();

    let app = image(work.path(), "app");
    assert!(s.push(&app, "team-a/app", "v1", ALICE), "alice → team-a");
    for blob in app.layers.iter().chain([&app.config]) {
        assert!(s.registry.has_blob(&blob.digest), "{}", blob.digest);
    }
    assert!(s.registry.has_blob(&app.manifest_digest));

    // Another team's namespace: 403 DENIED at the first upload request.
    s.push_denied(&image(work.path(), "other"), "team-b/app", ALICE);
    let r = send(&s.ep(), "POST", &upload("team-b/app"), Some(ALICE));
    assert_eq!(r.status, 403);
    assert!(r
        .body_text()
        .starts_with("{\"errors\":[{\"code\":\"DENIED\""));
    // Deeper names are in the namespace too; the namespace itself is not.
    assert_eq!(s.status("POST", &upload("team-a/x/y"), Some(ALICE)), 202);
    assert_eq!(s.status("POST", &upload("team-a"), Some(ALICE)), 403);

    // bob reads team-a (authenticated pull) but cannot write there.
    let pulled = work.path().join("pulled");
    let pull = CopyOpts::pull(&s.tls.cert_dir_for_skopeo(), BOB.0, BOB.1);
    pull_matches(&s, "team-a/app", &app, &pulled, &pull);
    s.push_denied(&image(work.path(), "bobs"), "team-a/app", BOB);
    let tags = send(&s.ep(), "GET", "/v2/team-a/app/tags/list", Some(BOB));
    assert_eq!(tags.status, 200);
    assert!(
        tags.body_text().contains("[\"v1\"]"),
        "{}",
        tags.body_text()
    );
    // And he can push to his own namespace.
    assert!(s.push(&image(work.path(), "b"), "team-b/app", "v1", BOB));
}

#[test]
fn anonymous_pulls_public_only_and_is_challenged_for_everything_else() {
    let tail = rule("public/**", &["anonymous"], &["pull"])
        + &rule("**", &["authenticated"], &["pull", "push"]);
    let maintainer = ("maint", "maint-pw");
    let s = Stack::start(&[maintainer], "", &tail);
    let work = tempfile::tempdir().unwrap();
    let base = image(work.path(), "base");
    assert!(s.push(&base, "public/base", "v1", maintainer));
    let private = image(work.path(), "private");
    assert!(s.push(&private, "private/app", "v1", maintainer));

    // skopeo without credentials (it pings, gets 401, then sends `Og==`).
    let anon = CopyOpts {
        src_cert_dir: Some(s.tls.cert_dir_for_skopeo()),
        ..CopyOpts::default()
    };
    pull_matches(&s, "public/base", &base, &work.path().join("p"), &anon);
    assert!(s.wait_access(" - \"GET /v2/public/base/manifests/v1 HTTP/1.1\" 200 "));

    let src = docker_ref(s.proxy.addr(), "private/app", "v1");
    let dst = format!("dir:{}", work.path().join("q").display());
    let stderr = skopeo_copy(&src, &dst, &anon).assert_failure().to_owned();
    let lower = stderr.to_lowercase();
    assert!(
        lower.contains("401") || lower.contains("unauthorized") || lower.contains("authentication"),
        "{stderr}"
    );

    let challenge = |r: &RawResponse, what: &str| {
        assert_eq!(r.status, 401, "{what}");
        assert_eq!(
            r.header("www-authenticate"),
            Some("Basic realm=\"Registry realm\""),
            "{what}"
        );
    };
    let ep = s.ep();
    let seen = s.registry.settle(Duration::from_millis(200));
    challenge(&send(&ep, "GET", "/v2/", None), "anonymous ping");
    challenge(
        &send(&ep, "GET", "/v2/private/app/manifests/v1", None),
        "private pull",
    );
    challenge(&send(&ep, "POST", &upload("public/x"), None), "public push");
    challenge(&send(&ep, "POST", &upload("public/base"), None), "push");
    challenge(
        &send(&ep, "DELETE", "/v2/public/base/manifests/v1", None),
        "delete",
    );
    s.registry.settle(Duration::from_millis(300));
    let reached = s.registry.requests()[seen..].to_vec();
    assert!(reached.is_empty(), "reached the registry: {reached:?}");
    // The raw public pull, with and without skopeo's empty credentials.
    let manifest = "/v2/public/base/manifests/v1";
    assert_eq!(send(&ep, "GET", manifest, None).status, 200);
    let og = [("Authorization", "Basic Og=="), ACCEPT];
    assert_eq!(http::get(&ep, manifest, None, &og).unwrap().status, 200);
}

#[test]
fn htgroup_edit_takes_alice_out_of_the_team_without_restart() {
    let dir = tempfile::tempdir().unwrap();
    let groups = dir.path().join("htgroup");
    std::fs::write(&groups, "# teams\nteam-a: alice\n").unwrap();
    let tail = rule("team-a/**", &["@team-a"], &["pull", "push"])
        + &rule("**", &["authenticated"], &["pull"]);
    let auth = format!(
        "groups = \"{}\"\nreload_interval = \"100ms\"\nmax_failures = 0",
        groups.display()
    );
    let s = Stack::start(&[ALICE, BOB], &auth, &tail);
    let work = tempfile::tempdir().unwrap();
    assert!(s.push(&image(work.path(), "a"), "team-a/app", "v1", ALICE));

    let started = s.proxy.pid();
    replace_file(&groups, "# teams\nteam-a: bob\n");
    let denied = support::wait_for(WAIT, || {
        (s.status("POST", &upload("team-a/app"), Some(ALICE)) == 403).then_some(())
    });
    assert!(denied.is_some(), "the htgroup edit was not picked up");
    s.push_denied(&image(work.path(), "b"), "team-a/app", ALICE);
    assert_eq!(
        s.status("GET", "/v2/team-a/app/tags/list", Some(ALICE)),
        200
    );
    assert_eq!(s.status("POST", &upload("team-a/app"), Some(BOB)), 202);
    assert_eq!(s.proxy.pid(), started);
}

/// Warms the cache for alice and bob, replaces the users with alice and
/// carol, lets `trigger` reload, and checks bob is out on his first try.
fn removed_user_is_shut_out(reload_interval: &str, trigger: impl FnOnce(&mut Stack)) -> Stack {
    let auth = format!("reload_interval = \"{reload_interval}\"\nmax_failures = 0");
    let mut s = Stack::start(
        &[ALICE, BOB],
        &auth,
        &rule("**", &["authenticated"], &["pull", "push"]),
    );
    assert_eq!(s.status("GET", "/v2/", Some(ALICE)), 200);
    assert_eq!(s.status("GET", "/v2/", Some(BOB)), 200);
    replace_file(&s.path("users"), &htpasswd_text(&[ALICE, CAROL]));
    trigger(&mut s);
    let reloaded = support::wait_for(WAIT, || {
        (s.status("GET", "/v2/", Some(CAROL)) == 200).then_some(())
    });
    assert!(reloaded.is_some(), "the new htpasswd was not picked up");
    // The first request after the reload: bob's cached credential is gone.
    assert_eq!(s.status("GET", "/v2/", Some(BOB)), 401);
    assert_eq!(s.status("POST", &upload("x/y"), Some(BOB)), 401);
    assert_eq!(s.status("GET", "/v2/", Some(ALICE)), 200);
    s
}

#[test]
fn sighup_reload_shuts_out_a_removed_user() {
    // The watcher polls once an hour: only the signal can reload.
    let mut s = removed_user_is_shut_out("1h", |s| {
        assert_eq!(s.status("GET", "/v2/", Some(BOB)), 200, "reloaded early");
        s.proxy.send_signal("HUP");
    });
    assert!(s.proxy.stderr_text().contains("SIGHUP"));
    assert!(s.proxy.try_wait().is_none(), "SIGHUP stopped regproxy");
}

#[test]
fn file_change_reload_shuts_out_a_removed_user() {
    let s = removed_user_is_shut_out("100ms", |_| {});
    assert!(s.proxy.stderr_text().contains("file change"));
}

#[test]
fn broken_reload_keeps_the_old_rules_and_says_where() {
    let v1 = rule("team-a/**", &["alice"], &["pull", "push"])
        + &rule("**", &["authenticated"], &["pull"]);
    let auth = "reload_interval = \"100ms\"\nmax_failures = 0";
    let mut s = Stack::start(&[ALICE, BOB], auth, &v1);
    let config = s.proxy.config_path();
    let team_a = upload("team-a/app");
    fn check_v1(s: &mut Stack, team_a: &str, what: &str) {
        assert_eq!(s.status("POST", team_a, Some(ALICE)), 202, "{what}");
        assert_eq!(s.status("POST", team_a, Some(BOB)), 403, "{what}");
        assert!(s.proxy.try_wait().is_none(), "{what}: regproxy exited");
    }
    check_v1(&mut s, &team_a, "start");

    // An unknown action in the config file.
    let good = std::fs::read_to_string(&config).unwrap();
    let bad = good.clone() + &rule("team-b/**", &["bob"], &["pull", "fly"]);
    let line = bad
        .lines()
        .position(|l| l == "repository = \"team-b/**\"")
        .unwrap();
    let failed = s.count_stderr("reload failed");
    replace_file(&config, &bad);
    assert!(s.wait_stderr_count("reload failed", failed));
    let log = s.proxy.stderr_text();
    // Located at the rule's `[[access]]` header, the line before.
    let at = format!("{}:{line}:1: [[access]] rule: ", config.display());
    assert!(log.contains(&at), "want {at} in\n{log}");
    assert!(log.contains("unknown action \"fly\""), "{log}");
    check_v1(&mut s, &team_a, "after a broken config");

    // Fixed, with a change: team-a now belongs to bob.
    let v2 =
        rule("team-a/**", &["bob"], &["pull", "push"]) + &rule("**", &["authenticated"], &["pull"]);
    replace_file(&config, &stack::config(&s.registry, &s.tls, auth, &v2));
    let applied = support::wait_for(WAIT, || {
        (s.status("POST", &team_a, Some(BOB)) == 202).then_some(())
    });
    assert!(applied.is_some(), "the fixed config was not picked up");
    assert_eq!(s.status("POST", &team_a, Some(ALICE)), 403);

    // A malformed htpasswd line (DES crypt, made by `htpasswd -d`).
    let des = Command::new("htpasswd")
        .args(["-nbd", "carol", CAROL.1])
        .output()
        .unwrap();
    let des = String::from_utf8(des.stdout).unwrap();
    let users = s.path("users");
    let failed = s.count_stderr("reload failed");
    replace_file(
        &users,
        &(htpasswd_text(&[BOB]) + des.trim_end() + "\n" + &htpasswd_text(&[CAROL])),
    );
    assert!(s.wait_stderr_count("reload failed", failed));
    let log = s.proxy.stderr_text();
    let at = format!("{}:2: ", users.display());
    assert!(log.contains(&at), "want {at} in\n{log}");
    assert!(log.contains("DES crypt"), "{log}");
    assert!(!log.contains(CAROL.1), "a password leaked into the log");
    // Still the old users: alice in, carol not yet.
    assert_eq!(s.status("GET", "/v2/", Some(ALICE)), 200);
    assert_eq!(s.status("GET", "/v2/", Some(CAROL)), 401);
    assert!(s.proxy.try_wait().is_none());

    replace_file(&users, &htpasswd_text(&[BOB, CAROL]));
    let applied = support::wait_for(WAIT, || {
        (s.status("GET", "/v2/", Some(CAROL)) == 200).then_some(())
    });
    assert!(applied.is_some(), "the fixed htpasswd was not picked up");
    assert_eq!(s.status("GET", "/v2/", Some(ALICE)), 401);
    assert_eq!(s.status("POST", &team_a, Some(BOB)), 202);
}

#[test]
fn failed_logins_are_limited_but_cached_credentials_still_work() {
    let auth = "max_failures = 3\nfailure_window = \"1m\"";
    let s = Stack::start(&[ALICE, BOB, CAROL], auth, "");
    // bob's credentials are verified and cached before the flood.
    assert_eq!(s.status("GET", "/v2/", Some(BOB)), 200);
    assert_eq!(s.status("GET", "/v2/", Some(ALICE)), 200);
    let wrong = ("alice", "guess");
    for i in 0..3 {
        assert_eq!(s.status("GET", "/v2/", Some(wrong)), 401, "guess {i}");
    }
    let limited = |r: &RawResponse, what: &str| {
        assert_eq!(r.status, 429, "{what}: {r:?}");
        let secs: u64 = r.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=60).contains(&secs), "{what}: Retry-After {secs}");
        assert!(
            r.body_text()
                .starts_with("{\"errors\":[{\"code\":\"TOOMANYREQUESTS\""),
            "{what}: {}",
            r.body_text()
        );
        assert!(r.header("www-authenticate").is_none(), "{what}");
    };
    let ep = s.ep();
    limited(&send(&ep, "GET", "/v2/", Some(wrong)), "fourth guess");
    // Cached credentials are served without asking the limiter, from the
    // same address and even for the limited user name.
    for _ in 0..3 {
        assert_eq!(s.status("GET", "/v2/", Some(BOB)), 200);
        assert_eq!(s.status("GET", "/v2/", Some(ALICE)), 200);
    }
    assert_eq!(s.status("GET", "/v2/_catalog", Some(BOB)), 200);
    // A credential not yet verified would cost a hash: refused, as the
    // address is limited, even though it is valid.
    limited(
        &send(&ep, "GET", "/v2/", Some(CAROL)),
        "carol's first login",
    );
    limited(
        &send(&ep, "GET", "/v2/", Some(("alice", "another-guess"))),
        "fifth guess",
    );
    assert!(s.wait_access(" - \"GET /v2/ HTTP/1.1\" 429 "));
}

#[test]
fn rotated_certificate_reaches_new_connections_and_open_ones_keep_working() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start();
    let a = Tls::generate(&dir.path().join("tls-a"));
    let b = Tls::generate(&dir.path().join("tls-b"));
    // `live` is a symlink to the current pair, swapped atomically as a
    // Kubernetes secret volume does, so no reload sees a mismatched pair.
    let live = dir.path().join("live");
    std::os::unix::fs::symlink(a.dir(), &live).unwrap();
    support::write_htpasswd(&dir.path().join("users"), &[ALICE]);
    let config = format!(
        r#"listen = "127.0.0.1:0"
[tls]
cert = "live/server.crt"
key = "live/server.key"
[auth]
htpasswd = "users"
reload_interval = "100ms"
[upstream]
servers = ["{}"]
"#,
        registry.addr()
    );
    let proxy = Proxy::start(&config, dir.path());
    let addr = proxy.addr();
    let keep = [("Connection", "keep-alive")];
    let request = http::build_request("GET", "/v2/", Some(ALICE), &keep, b"");

    let mut open = Conn::connect(a.endpoint(addr)).unwrap();
    open.send(&request).unwrap();
    assert_eq!(open.read_response().unwrap().status, 200);

    let next = dir.path().join("live.next");
    std::os::unix::fs::symlink(b.dir(), &next).unwrap();
    std::fs::rename(&next, &live).unwrap();
    let mut fresh = support::wait_for(WAIT, || Conn::connect(b.endpoint(addr)).ok())
        .unwrap_or_else(|| panic!("certificate B never served:\n{}", proxy.stderr_text()));
    fresh.send(&request).unwrap();
    assert_eq!(fresh.read_response().unwrap().status, 200);
    let old = Conn::connect(a.endpoint(addr));
    assert!(old.is_err(), "a new connection still got certificate A");

    // The connection opened under certificate A goes on.
    for _ in 0..2 {
        open.send(&request).unwrap();
        assert_eq!(open.read_response().unwrap().status, 200);
    }
    assert!(!open.is_closed(Duration::from_millis(100)));

    // Back to A by copying the files over the served paths, one at a time.
    replace_file(&live.join("server.crt"), &read(&a.server_cert()));
    replace_file(&live.join("server.key"), &read(&a.server_key()));
    let back = support::wait_for(WAIT, || Conn::connect(a.endpoint(addr)).ok());
    assert!(back.is_some(), "certificate A never came back");
    assert!(Conn::connect(b.endpoint(addr)).is_err());
    fresh.send(&request).unwrap();
    assert_eq!(fresh.read_response().unwrap().status, 200);
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn an_edit_landing_during_a_file_change_reload_is_not_lost() {
    // 200 000 users make each load take a few hundred ms, so the second of
    // two quick edits (a script adding users one by one) lands while the
    // reload the first one started is still running.
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start();
    let line = support::htpasswd_bcrypt("filler", "filler-pw");
    let hash = line.split_once(':').unwrap().1;
    let mut text: String = (0..200_000).map(|i| format!("f{i}:{hash}\n")).collect();
    text += &htpasswd_text(&[ALICE]);
    let users = dir.path().join("users");
    std::fs::write(&users, &text).unwrap();
    let config = format!(
        "listen = \"127.0.0.1:0\"\n[auth]\nhtpasswd = \"users\"\nreload_interval = \"50ms\"\nmax_failures = 0\n[upstream]\nservers = [\"{}\"]\n",
        registry.addr()
    );
    let proxy = Proxy::start(&config, dir.path());
    let status = |user: (&str, &str)| {
        http::get(proxy.addr(), "/v2/", Some(user), &[])
            .unwrap()
            .status
    };
    text += &htpasswd_text(&[BOB]);
    replace_file(&users, &text);
    // Not synchronisation: the pause of a script between two edits, past
    // the 50 ms poll so the first edit's reload has begun, short of the
    // few hundred ms the reload takes (the timing is the case tested).
    std::thread::sleep(Duration::from_millis(80));
    text += &htpasswd_text(&[CAROL]);
    replace_file(&users, &text);
    let loaded = support::wait_for(WAIT, || (status(CAROL) == 200).then_some(()));
    let log = proxy.stderr_text();
    let reloads: Vec<&str> = log.lines().filter(|l| l.contains("reloaded")).collect();
    assert!(
        loaded.is_some(),
        "the second edit was never loaded; the file has {} users, reloads:\n{}",
        text.lines().count(),
        reloads.join("\n")
    );
    assert_eq!((status(ALICE), status(BOB)), (200, 200));
}

/// Runs a command and returns its stdout, trimmed.
fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(out.status.success(), "{program} {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap().trim_end().to_owned()
}

#[test]
fn every_htpasswd_format_made_by_the_real_tools() {
    // (user, password, line), each made now by the tool nginx users use.
    let mut users: Vec<(String, String, String)> = Vec::new();
    let mut add = |user: &str, pass: &str, line: String| {
        users.push((user.to_owned(), pass.to_owned(), line));
    };
    let htpasswd = |flag: &str, user: &str, pass: &str| run("htpasswd", &[flag, user, pass]);
    let bcrypt = htpasswd("-nbB", "u-bcrypt", "bcrypt pw:1");
    assert!(bcrypt.starts_with("u-bcrypt:$2y$"), "{bcrypt}");
    // The same hash under the other bcrypt prefixes (same algorithm for
    // ASCII passwords).
    let bcrypt_b = bcrypt.replacen("u-bcrypt:$2y$", "u-2b:$2b$", 1);
    let bcrypt_a = bcrypt.replacen("u-bcrypt:$2y$", "u-2a:$2a$", 1);
    add("u-bcrypt", "bcrypt pw:1", bcrypt);
    add("u-2b", "bcrypt pw:1", bcrypt_b);
    add("u-2a", "bcrypt pw:1", bcrypt_a);
    add("u-apr1", "apr1-pw", htpasswd("-nbm", "u-apr1", "apr1-pw"));
    add("u-sha", "sha pw", htpasswd("-nbs", "u-sha", "sha pw"));
    let openssl = |args: &[&str]| run("openssl", args);
    for (user, flag, pass) in [
        ("u-apr1-openssl", "-apr1", "openssl-apr1"),
        ("u-sha256", "-5", "sha-256 crypt"),
        ("u-sha512", "-6", "sha-512:crypt"),
    ] {
        let hash = openssl(&["passwd", flag, pass]);
        add(user, pass, format!("{user}:{hash}"));
    }
    // {SSHA}: base64(SHA-1(password + salt) + salt), digest by openssl.
    let script = "(printf '%s%s' \"$1\" \"$2\" | openssl dgst -sha1 -binary; printf '%s' \"$2\") | openssl base64 -A";
    let ssha = run("sh", &["-c", script, "sh", "ssha-pw", "s4lt!x"]);
    add("u-ssha", "ssha-pw", format!("u-ssha:{{SSHA}}{ssha}"));
    add("u-plain", "plain pw", "u-plain:{PLAIN}plain pw".to_owned());

    let mut text = String::from("# made at test time\n\n");
    for (_, _, line) in &users {
        text.push_str(line);
        text.push('\n');
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("users"), &text).unwrap();
    let registry = Registry::start();
    let config = format!(
        "listen = \"127.0.0.1:0\"\n[auth]\nhtpasswd = \"users\"\nmax_failures = 0\n[upstream]\nservers = [\"{}\"]\n",
        registry.addr()
    );
    let proxy = Proxy::start(&config, dir.path());
    for (user, pass, line) in &users {
        let status = |p: &str| {
            http::get(proxy.addr(), "/v2/", Some((user, p)), &[])
                .unwrap()
                .status
        };
        assert_eq!(status(pass), 200, "{line}");
        assert_eq!(status(&format!("{pass}x")), 401, "{line}");
        assert_eq!(status(""), 401, "{line}");
        // A cached success does not make another password pass.
        assert_eq!(status(pass), 200, "{line}");
        assert_eq!(status("wrong"), 401, "{line}");
    }

    // What nginx would read as crypt(3) is refused at load, with file:line.
    for flag in ["-nbd", "-nbp"] {
        let line = htpasswd(flag, "u-old", "old-pw");
        let refused = tempfile::tempdir().unwrap();
        std::fs::write(refused.path().join("users"), format!("{text}{line}\n")).unwrap();
        let f = Proxy::try_start(&config, refused.path()).err().unwrap();
        let at = format!("users:{}: ", text.lines().count() + 1);
        assert!(f.stderr.contains(&at), "{flag}: want {at} in\n{}", f.stderr);
        assert!(!f.stderr.contains("old-pw"), "{flag}: password leaked");
    }
}

#[test]
fn check_names_an_undefined_group() {
    let dir = tempfile::tempdir().unwrap();
    support::write_htpasswd(&dir.path().join("users"), &[ALICE]);
    let base = "listen = \"127.0.0.1:0\"\n[auth]\nhtpasswd = \"users\"\n[upstream]\nservers = [\"127.0.0.1:5000\"]\n";
    let path = dir.path().join("regproxy.toml");
    let check = |text: &str| {
        std::fs::write(&path, text).unwrap();
        support::proxy::command()
            .arg("check")
            .arg("--config")
            .arg(&path)
            .output()
            .unwrap()
    };
    let rules = rule("ops/**", &["@ghosts", "alice"], &["pull", "push"]);
    let out = check(&format!("{base}[groups]\nadmins = [\"alice\"]\n{rules}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("@ghosts"), "{stderr}");
    assert!(stderr.contains("not defined"), "{stderr}");
    assert!(stderr.contains(&path.display().to_string()), "{stderr}");
    assert!(!stderr.contains("@admins"), "{stderr}");

    // Defined (even empty), the same rules pass.
    let out = check(&format!("{base}[groups]\nghosts = []\n{rules}"));
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains(": ok"));
}
