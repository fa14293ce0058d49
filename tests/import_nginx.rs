//! `regproxy import-nginx` end to end: the nginx auth-proxy recipe's
//! nginx.conf (our fixture `tests/fixtures/nginx-recipe/nginx.conf`), a
//! variant with `include`, a trusted-ELB header block and two upstream
//! servers, and a file with unknown directives. Every converted config
//! passes `regproxy check`; the recipe's conversion, serving in front of
//! the real registry, answers with the same statuses as the real nginx
//! running the recipe.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use support::http::{self, Endpoint};
use support::proxy::{self, Proxy};
use support::registry::Registry;
use support::tls::Tls;

/// The recipe's `auth/nginx.conf`, as published (tests/fixtures/README.md).
fn recipe_conf() -> String {
    let path = support::fixture("nginx-recipe/nginx.conf");
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    assert!(text.contains("auth_basic_user_file"), "{text}");
    text
}

/// `regproxy import-nginx CONF --out OUT ARGS…`.
fn import(conf: &Path, out: &Path, args: &[&str]) -> Output {
    proxy::command()
        .arg("import-nginx")
        .arg(conf)
        .arg("--out")
        .arg(out)
        .args(args)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `regproxy check --config FILE` succeeds.
fn assert_checks(config: &Path) {
    let out = proxy::command()
        .arg("check")
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "check failed: {}\n{}",
        text(&out.stderr),
        std::fs::read_to_string(config).unwrap()
    );
}

/// The files the recipe names under /etc/nginx/conf.d, in `dir/auth`.
fn recipe_files(dir: &Path, users: &[(&str, &str)]) -> Tls {
    let tls = Tls::generate(&dir.join("tls"));
    let auth = dir.join("auth");
    std::fs::create_dir_all(&auth).unwrap();
    std::fs::copy(tls.server_cert(), auth.join("domain.crt")).unwrap();
    std::fs::copy(tls.server_key(), auth.join("domain.key")).unwrap();
    support::write_htpasswd(&auth.join("nginx.htpasswd"), users);
    tls
}

#[test]
fn the_recipe_converts_without_loss_and_checks() {
    let conf = recipe_conf();
    let dir = tempfile::tempdir().unwrap();
    recipe_files(dir.path(), &[("testuser", "testpassword")]);
    std::fs::write(dir.path().join("nginx.conf"), &conf).unwrap();
    let toml = dir.path().join("regproxy.toml");
    let out = import(
        &dir.path().join("nginx.conf"),
        &toml,
        &[
            "--map-path",
            "/etc/nginx/conf.d=auth",
            "--resolve",
            "registry=127.0.0.1",
            "--strict",
        ],
    );
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains(": directive "), "{stderr}");
    let written = std::fs::read_to_string(&toml).unwrap();
    for want in [
        "listen = \"0.0.0.0:443\"",
        "cert = \"auth/domain.crt\"",
        "htpasswd = \"auth/nginx.htpasswd\"",
        "realm = \"Registry realm\"",
        "servers = [\"127.0.0.1:5000\"]",
        "read_timeout = \"900s\"",
        "auth_basic_user_file /etc/nginx/conf.d/nginx.htpasswd\nhtpasswd",
        "regproxy refuses pre-1.6 docker agents already",
    ] {
        assert!(written.contains(want), "missing {want:?} in\n{written}");
    }
    assert_checks(&toml);
}

#[test]
fn include_trusted_balancer_and_two_upstreams() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    recipe_files(d, &[("testuser", "testpassword")]);
    std::fs::create_dir_all(d.join("conf.d")).unwrap();
    std::fs::create_dir_all(d.join("sites")).unwrap();
    std::fs::write(
        d.join("nginx.conf"),
        "events { worker_connections 1024; }\nhttp {\n  include conf.d/*.conf;\n  include sites/registry;\n}\n",
    )
    .unwrap();
    std::fs::write(
        d.join("conf.d/upstream.conf"),
        "upstream docker-registry {\n  server 127.0.0.1:5000;\n  server 127.0.0.1:5001;\n  keepalive 16;\n}\n",
    )
    .unwrap();
    std::fs::write(
        d.join("conf.d/elb.conf"),
        "# The ELB in front terminates nothing but sets X-Forwarded-*.\nset_real_ip_from 10.0.0.0/8;\nreal_ip_header X-Forwarded-For;\n",
    )
    .unwrap();
    std::fs::write(d.join("conf.d/ignored.txt"), "this is not nginx syntax {").unwrap();
    std::fs::write(
        d.join("sites/registry"),
        r#"server {
  listen 5043 ssl;
  ssl_certificate auth/domain.crt;
  ssl_certificate_key auth/domain.key;
  client_max_body_size 0;
  chunked_transfer_encoding on;
  location /v2/ {
    auth_basic "Registry realm";
    auth_basic_user_file auth/nginx.htpasswd;
    add_header 'Docker-Distribution-Api-Version' 'registry/2.0' always;
    # Behind the ELB: the X-Real-IP/X-Forwarded-* lines removed, as the recipe says.
    proxy_pass http://docker-registry;
    proxy_set_header Host $http_host;
    proxy_read_timeout 900;
  }
}
"#,
    )
    .unwrap();
    let toml = d.join("regproxy.toml");
    let out = import(&d.join("nginx.conf"), &toml, &["--strict"]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let written = std::fs::read_to_string(&toml).unwrap();
    let upstream_conf = d.join("conf.d/upstream.conf").display().to_string();
    let sites = d.join("sites/registry").display().to_string();
    for want in [
        "servers = [\"127.0.0.1:5000\", \"127.0.0.1:5001\"]".to_owned(),
        format!("{upstream_conf}:2 server 127.0.0.1:5000"),
        format!("{upstream_conf}:4 keepalive 16"),
        "max_idle_per_worker = 16".into(),
        "trusted_proxies = [\"10.0.0.0/8\"]".into(),
        "trust_forwarded_headers = true".into(),
        format!("{sites}:2 listen 5043 ssl\nlisten = \"0.0.0.0:5043\""),
        // Relative nginx paths are relative to nginx.conf's folder.
        format!("cert = \"{}\"", d.join("auth/domain.crt").display()),
    ] {
        assert!(written.contains(&want), "missing {want:?} in\n{written}");
    }
    assert_checks(&toml);
}

#[test]
fn unknown_directives_are_listed_and_strict_fails() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    recipe_files(d, &[("testuser", "testpassword")]);
    let conf = d.join("nginx.conf");
    std::fs::write(
        &conf,
        r#"load_module modules/ngx_http_brotli_filter_module.so;
events { worker_connections 1024; }
http {
  brotli on;
  server {
    listen 443 ssl;
    ssl_certificate auth/domain.crt;
    ssl_certificate_key auth/domain.key;
    location /v2/ {
      auth_basic "Registry realm";
      auth_basic_user_file auth/nginx.htpasswd;
      lua_access_by_block "check()";
      proxy_pass http://127.0.0.1:5000;
      proxy_set_header X-Team "platform";
    }
    location /healthz { return 200; }
  }
}
"#,
    )
    .unwrap();
    let toml = d.join("regproxy.toml");
    let conf_s = conf.display().to_string();
    let expect = [
        format!("{conf_s}:1: directive load_module not converted: import-nginx does not know it"),
        format!("{conf_s}:4: directive brotli not converted: import-nginx does not know it"),
        format!("{conf_s}:12: directive lua_access_by_block not converted: import-nginx does not know it"),
        format!("{conf_s}:14: directive proxy_set_header not converted: regproxy sends a fixed set of headers"),
        format!("{conf_s}:16: directive location not converted: regproxy proxies /v2/ only"),
    ];
    let out = import(&conf, &toml, &[]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "without --strict: exit 0\n{stderr}");
    for e in &expect {
        assert!(
            stderr.lines().any(|l| l.starts_with(e.as_str())),
            "missing {e:?} in\n{stderr}"
        );
    }
    assert_eq!(
        stderr.matches(": directive ").count(),
        expect.len(),
        "{stderr}"
    );
    assert_checks(&toml);

    std::fs::remove_file(&toml).unwrap();
    let out = import(&conf, &toml, &["--strict"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "--strict: {}",
        text(&out.stderr)
    );
    assert!(text(&out.stderr).contains("5 directives not converted (--strict)"));
    assert!(toml.exists(), "the config is still written");
}

// === the recipe's statuses, nginx against its conversion ===

/// The real nginx in its own prefix; killed by PID on drop.
struct Nginx {
    child: Child,
    addr: SocketAddr,
    prefix: PathBuf,
}

impl Nginx {
    fn start(bin: &Path, conf: &str, prefix: &Path, port: u16) -> Nginx {
        std::fs::create_dir_all(prefix.join("logs")).unwrap();
        std::fs::write(prefix.join("nginx.conf"), conf).unwrap();
        // Process settings only, as bench/compare passes them; workers
        // run as root when we are root, so they can read the temp files.
        let mut globals = format!(
            "daemon off; pid {}; error_log {} info;",
            prefix.join("nginx.pid").display(),
            prefix.join("error.log").display()
        );
        if support::require::running_as_root() {
            globals.push_str(" user root;");
        }
        let child = Command::new(bin)
            .arg("-p")
            .arg(prefix)
            .arg("-c")
            .arg(prefix.join("nginx.conf"))
            .arg("-g")
            .arg(globals)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run nginx (apt-get install nginx)");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut n = Nginx {
            child,
            addr,
            prefix: prefix.to_owned(),
        };
        let up = support::wait_for(Duration::from_secs(20), || {
            if let Ok(Some(status)) = n.child.try_wait() {
                panic!("nginx exited {status}: {}", n.error_log());
            }
            TcpStream::connect(addr).ok()
        });
        assert!(up.is_some(), "nginx did not listen: {}", n.error_log());
        n
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.prefix.join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM first: the master stops its workers before it exits.
        // SIGKILL alone left each run's worker running, orphaned.
        support::cmd::stop_pid(self.child.id(), Duration::from_secs(5));
        let _ = self.child.wait();
    }
}

/// One request against an endpoint (and a repository of its own); its status.
type Case<'a> = Box<dyn Fn(Endpoint, &str) -> u16 + 'a>;

#[test]
fn the_recipe_and_its_conversion_answer_alike() {
    let conf = recipe_conf();
    let Some(nginx_bin) = support::require_tool("nginx", "nginx") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // testuser is the recipe's user; outsider is any other valid user (the
    // recipe's config has no push group, so both may push).
    let tls = recipe_files(
        d,
        &[("testuser", "testpassword"), ("outsider", "outsiderpw")],
    );
    let registry = Registry::start();
    let auth = d.join("auth").display().to_string();

    // nginx: the recipe with the substitutions bench/compare makes (listen
    // address, upstream address, file paths); nothing else changes.
    let port = support::free_port();
    let nginx_conf = conf
        .replace("listen 443 ssl;", &format!("listen 127.0.0.1:{port} ssl;"))
        .replace(
            "server registry:5000;",
            &format!("server {};", registry.addr()),
        )
        .replace("/etc/nginx/conf.d", &auth);
    assert_ne!(nginx_conf, conf);
    let nginx = Nginx::start(&nginx_bin, &nginx_conf, &d.join("nginx"), port);

    // regproxy: the verbatim recipe converted; only the listen address is
    // changed, to a free port.
    std::fs::write(d.join("nginx.conf"), &conf).unwrap();
    let toml = d.join("converted.toml");
    let out = import(
        &d.join("nginx.conf"),
        &toml,
        &[
            "--map-path",
            &format!("/etc/nginx/conf.d={auth}"),
            "--resolve",
            &format!("registry:5000={}", registry.addr()),
            "--strict",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_checks(&toml);
    let converted = std::fs::read_to_string(&toml).unwrap();
    assert!(
        converted.contains("listen = \"0.0.0.0:443\""),
        "{converted}"
    );
    let converted = converted.replace("listen = \"0.0.0.0:443\"", "listen = \"127.0.0.1:0\"");
    let regproxy = Proxy::start(&converted, &d.join("regproxy"));

    let blob = b"a layer pushed through the recipe";
    let digest = support::skopeo::sha256_digest(blob);
    let old_agent = [("User-Agent", "docker/1.5.0 go/go1.4")];
    let cases: Vec<(&str, u16, Case)> = vec![
        (
            "no credentials",
            401,
            Box::new(|ep, _| http::get(ep, "/v2/", None, &[]).unwrap().status),
        ),
        (
            "wrong password",
            401,
            Box::new(|ep, _| {
                http::get(ep, "/v2/", Some(("testuser", "wrong")), &[])
                    .unwrap()
                    .status
            }),
        ),
        (
            "push by a user outside a push group (the recipe has none: allowed)",
            201,
            Box::new(|ep, repo| {
                // POST starts the upload (202 + Location), PUT ?digest= ends it.
                let creds = Some(("outsider", "outsiderpw"));
                let start = format!("/v2/{repo}/blobs/uploads/");
                let r = http::request(ep.clone(), "POST", &start, creds, &[], b"").unwrap();
                if r.status != 202 {
                    return r.status;
                }
                let location = r.header("location").expect("upload Location");
                let path = &location[location.find("/v2/").expect("a /v2/ URL")..];
                let sep = if path.contains('?') { '&' } else { '?' };
                http::request(
                    ep,
                    "PUT",
                    &format!("{path}{sep}digest={digest}"),
                    creds,
                    &[("Content-Type", "application/octet-stream")],
                    blob,
                )
                .unwrap()
                .status
            }),
        ),
        (
            "pull",
            200,
            Box::new(|ep, repo| {
                let path = format!("/v2/{repo}/blobs/{digest}");
                let r = http::get(ep, &path, Some(("testuser", "testpassword")), &[]).unwrap();
                if r.status == 200 {
                    assert_eq!(r.body, blob, "pulled bytes");
                }
                r.status
            }),
        ),
        (
            "old docker user agent",
            404,
            Box::new(|ep, _| {
                http::get(ep, "/v2/", Some(("testuser", "testpassword")), &old_agent)
                    .unwrap()
                    .status
            }),
        ),
    ];
    let endpoints = [
        ("nginx", tls.endpoint(nginx.addr), "via-nginx/app"),
        (
            "regproxy",
            tls.endpoint(regproxy.addr()),
            "via-regproxy/app",
        ),
    ];
    for (what, expected, case) in &cases {
        let got: Vec<u16> = endpoints
            .iter()
            .map(|(_, ep, repo)| case(ep.clone(), repo))
            .collect();
        assert_eq!(
            got,
            vec![*expected, *expected],
            "{what}: [nginx, regproxy]\nnginx error log:\n{}\nregproxy stderr:\n{}",
            nginx.error_log(),
            regproxy.stderr_text()
        );
    }
    // Stopping nginx stops its workers too: none may outlive the test.
    let log = nginx.prefix.join("error.log");
    drop(nginx);
    let holders = support::wait_for(Duration::from_secs(5), || {
        let left = processes_holding(&log);
        left.is_empty().then_some(())
    });
    assert!(
        holders.is_some(),
        "nginx processes left running: {:?}",
        processes_holding(&log)
    );
}

/// PIDs of the processes that hold `path` open.
fn processes_holding(path: &Path) -> Vec<u32> {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .flatten()
        .filter_map(|p| p.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
                fds.flatten()
                    .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t == path))
            })
        })
        .collect()
}
