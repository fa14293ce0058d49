use std::path::Path;

use super::*;
use crate::config::Config;
use crate::tools::nginx::parse_str;

/// The recipe's nginx.conf as published (docs.docker.com / distribution
/// "Authenticate proxy with nginx").
const RECIPE: &str = r#"events {
    worker_connections  1024;
}

http {

  upstream docker-registry {
    server registry:5000;
  }

  ## Set a variable to help us decide if we need to add the
  ## 'Docker-Distribution-Api-Version' header.
  map $upstream_http_docker_distribution_api_version $docker_distribution_api_version {
    '' 'registry/2.0';
  }

  server {
    listen 443 ssl;
    server_name myregistrydomain.com;

    # SSL
    ssl_certificate /etc/nginx/conf.d/domain.crt;
    ssl_certificate_key /etc/nginx/conf.d/domain.key;

    # Recommendations from https://raymii.org/s/tutorials/Strong_SSL_Security_On_nginx.html
    ssl_protocols TLSv1.1 TLSv1.2;
    ssl_ciphers 'EECDH+AESGCM:EDH+AESGCM:AES256+EECDH:AES256+EDH';
    ssl_prefer_server_ciphers on;
    ssl_session_cache shared:SSL:10m;

    # disable any limits to avoid HTTP 413 for large image uploads
    client_max_body_size 0;

    # required to avoid HTTP 411: see Issue #1486 (https://github.com/moby/moby/issues/1486)
    chunked_transfer_encoding on;

    location /v2/ {
      # Do not allow connections from docker 1.5 and earlier
      # docker pre-1.6.0 did not properly set the user agent on ping, catch "Go *" user agents
      if ($http_user_agent ~ "^(docker\/1\.(3|4|5(?!\.[0-9]-dev))|Go ).*$" ) {
        return 404;
      }

      # To add basic authentication to v2 use auth_basic setting.
      auth_basic "Registry realm";
      auth_basic_user_file /etc/nginx/conf.d/nginx.htpasswd;

      ## If $docker_distribution_api_version is empty, the header is not added.
      ## See the map directive above where this variable is defined.
      add_header 'Docker-Distribution-Api-Version' $docker_distribution_api_version always;

      proxy_pass                          http://docker-registry;
      proxy_set_header  Host              $http_host;   # required for docker client's sake
      proxy_set_header  X-Real-IP         $remote_addr; # pass on real client's IP
      proxy_set_header  X-Forwarded-For   $proxy_add_x_forwarded_for;
      proxy_set_header  X-Forwarded-Proto $scheme;
      proxy_read_timeout                  900;
    }
  }
}
"#;

fn opts() -> Options {
    Options {
        conf_dir: PathBuf::from("/etc/nginx"),
        map_paths: vec![(PathBuf::from("/etc/nginx/conf.d"), PathBuf::from("auth"))],
        resolve: vec![("registry".into(), "127.0.0.1".into())],
    }
}

fn run(text: &str) -> Conversion {
    let tree = parse_str(text, Path::new("nginx.conf")).expect("parses");
    convert(&tree, "nginx.conf", &opts())
}

/// Loads the TOML as `regproxy check` would, with the files it names.
fn loads(toml: &str) -> Config {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("auth")).expect("mkdir");
    for f in ["domain.crt", "domain.key", "nginx.htpasswd"] {
        std::fs::write(dir.path().join("auth").join(f), "").expect("write");
    }
    Config::parse(
        &dir.path().join("regproxy.toml"),
        toml,
        &crate::config::SystemHost,
    )
    .unwrap_or_else(|e| panic!("{e}\n{toml}"))
}

#[test]
fn the_recipe_converts_whole() {
    let c = run(RECIPE);
    assert_eq!(c.not_converted, Vec::<String>::new(), "{}", c.toml);
    let t = &c.toml;
    for line in [
        "# nginx.conf:18 listen 443 ssl\nlisten = \"0.0.0.0:443\"",
        "[tls]\n# nginx.conf:22 ssl_certificate /etc/nginx/conf.d/domain.crt\ncert = \"auth/domain.crt\"",
        "key = \"auth/domain.key\"",
        "# nginx.conf:45 auth_basic 'Registry realm'\nrealm = \"Registry realm\"",
        "# nginx.conf:46 auth_basic_user_file /etc/nginx/conf.d/nginx.htpasswd\nhtpasswd = \"auth/nginx.htpasswd\"",
        "servers = [\"127.0.0.1:5000\"]",
        "# nginx.conf:57 proxy_read_timeout 900\nread_timeout = \"900s\"",
        "#   nginx.conf:2 worker_connections 1024: no per-worker connection cap",
        "#   nginx.conf:40 if ($http_user_agent ~",
        "regproxy refuses pre-1.6 docker agents already",
        "#   nginx.conf:26 ssl_protocols TLSv1.1 TLSv1.2: regproxy offers TLS 1.2 and 1.3",
        "#   nginx.conf:35 chunked_transfer_encoding on: chunked requests",
        "#   nginx.conf:32 client_max_body_size 0: no body size limit",
        "#   nginx.conf:50 add_header Docker-Distribution-Api-Version",
        "#   nginx.conf:13 map $upstream_http_docker_distribution_api_version",
        "#   nginx.conf:55 proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for: X-Forwarded-For",
    ] {
        assert!(t.contains(line), "missing {line:?} in\n{t}");
    }
    // No push group in the recipe: every valid user may push.
    assert!(
        !t.contains("push_users") && !t.contains("[[access]]"),
        "{t}"
    );
    assert!(!t.contains("trust_forwarded_headers"), "{t}");
    let cfg = loads(t);
    assert_eq!(cfg.listen.port(), 443);
    assert!(cfg.tls.is_some());
    assert_eq!(cfg.auth.realm, "Registry realm");
    assert_eq!(cfg.upstream.read_timeout.as_secs(), 900);
    assert!(cfg.auth.push_users.is_none());
}

/// The recipe behind an ELB (the X-* lines removed, as the recipe advises),
/// two registries with keep-alive, a push group and timeouts.
const VARIANT: &str = r#"
worker_processes 2;
worker_cpu_affinity 01 10;
events { worker_connections 512; }
http {
  upstream registries {
    server 10.0.0.5:5000;
    server registry:5001 weight=2;
    keepalive 32;
  }
  map $remote_user $allowed_push { default 0; testuser 1; ci-bot 1; }
  set_real_ip_from 10.1.0.0/16;
  real_ip_header X-Forwarded-For;
  client_body_timeout 120s;
  server {
    listen 127.0.0.1:8443 ssl http2;
    ssl_certificate /etc/nginx/conf.d/domain.crt;
    ssl_certificate_key /etc/nginx/conf.d/domain.key;
    keepalive_timeout 30;
    location /v2/ {
      auth_basic "Corp";
      auth_basic_user_file /etc/nginx/conf.d/nginx.htpasswd;
      set $deny "";
      if ($request_method !~ ^(GET|HEAD)$) { set $deny "w"; }
      if ($allowed_push = 0) { set $deny "${deny}u"; }
      if ($deny = wu) { return 403; }
      proxy_pass http://registries;
      proxy_set_header Host $http_host;
      proxy_read_timeout 15m;
      proxy_connect_timeout 3s;
    }
  }
}
"#;

#[test]
fn elb_variant_two_upstreams_and_push_group() {
    let c = run(VARIANT);
    let t = &c.toml;
    assert_eq!(
        c.not_converted,
        vec![
            "nginx.conf:8: server parameters weight=2 not converted: regproxy round-robins evenly"
        ],
        "{t}"
    );
    for line in [
        "workers = 2",
        "pin_workers = true",
        "CPU masks are not kept",
        "listen = \"127.0.0.1:8443\"",
        "(http2 not needed",
        "servers = [\"10.0.0.5:5000\", \"127.0.0.1:5001\"]",
        "# nginx.conf:9 keepalive 32 (idle connections per worker, as nginx counts them)\nmax_idle_per_worker = 32",
        "read_timeout = \"900s\"",
        "connect_timeout = \"3s\"",
        "push_users = [\"ci-bot\", \"testuser\"]",
        "trusted_proxies = [\"10.1.0.0/16\"]",
        "trust_forwarded_headers = true",
        "body_timeout = \"120s\"",
        "idle_timeout = \"30s\"",
        "realm = \"Corp\"",
    ] {
        assert!(t.contains(line) || line == "read_timeout = \"900s\"", "missing {line:?} in\n{t}");
    }
    assert!(t.contains("read_timeout = \"900s\""), "15m is 900s: {t}");
    let cfg = loads(t);
    assert_eq!(cfg.upstream.servers.len(), 2);
    assert_eq!(cfg.upstream.max_idle_per_worker, 32);
    assert!(cfg.forwarding.trust_forwarded_headers);
    assert_eq!(cfg.forwarding.trusted_proxies.len(), 1);
    assert_eq!(
        cfg.auth.push_users,
        Some(vec!["ci-bot".to_owned(), "testuser".to_owned()])
    );
}

#[test]
fn limit_except_variants() {
    let base = |le: &str| {
        RECIPE.replace(
            "      auth_basic \"Registry realm\";\n",
            &format!("      auth_basic off;\n      {le}\n"),
        )
    };
    // Anonymous pulls; pushes need a user.
    let c = run(&base(
        "limit_except GET HEAD { auth_basic \"Registry realm\"; }",
    ));
    assert_eq!(c.not_converted, Vec::<String>::new(), "{}", c.toml);
    assert!(
        c.toml
            .contains("who = [\"anonymous\"]\nactions = [\"pull\", \"catalog\"]"),
        "{}",
        c.toml
    );
    assert!(c.toml.contains("who = [\"authenticated\"]"), "{}", c.toml);
    let cfg = loads(&c.toml);
    assert_eq!(cfg.access.map(|r| r.len()), Some(2));

    // Read-only for everyone: nobody may push.
    let ro = RECIPE.replace(
        "      proxy_pass ",
        "      limit_except GET { deny all; }\n      proxy_pass ",
    );
    let c = run(&ro);
    assert_eq!(c.not_converted, Vec::<String>::new(), "{}", c.toml);
    assert!(c.toml.contains("push_users = []"), "{}", c.toml);
    loads(&c.toml);

    // Address lists are reported, not guessed.
    let ip = RECIPE.replace(
        "      proxy_pass ",
        "      limit_except GET { allow 10.0.0.0/8; deny all; }\n      proxy_pass ",
    );
    let c = run(&ip);
    assert!(
        c.not_converted
            .iter()
            .any(|l| l.contains("directive allow not converted: address-based")),
        "{:?}",
        c.not_converted
    );
}

#[test]
fn unknown_and_unconvertible_directives_are_listed_with_their_line() {
    let text = RECIPE
        .replace(
            "    server_name myregistrydomain.com;\n",
            "    server_name myregistrydomain.com;\n    brotli on;\n    add_header X-Frame-Options DENY;\n",
        )
        .replace(
            "      proxy_read_timeout                  900;\n",
            "      proxy_read_timeout                  900;\n      proxy_set_header X-Custom yes;\n      client_max_body_size 10m;\n      if ($http_user_agent ~* curl) { return 403; }\n",
        )
        + "stream { server { listen 12345; } }\n";
    let c = run(&text);
    let expect = [
        "nginx.conf:20: directive brotli not converted: import-nginx does not know it",
        "nginx.conf:60: directive proxy_set_header not converted: regproxy sends a fixed set",
        "nginx.conf:61: directive client_max_body_size not converted: regproxy sets no body size limit",
        "nginx.conf:62: directive if not converted: regproxy blocks exactly the recipe's user agents",
        "nginx.conf:66: directive stream not converted",
    ];
    for e in expect {
        assert!(
            c.not_converted.iter().any(|l| l.starts_with(e)),
            "missing {e:?} in {:#?}",
            c.not_converted
        );
    }
    assert_eq!(
        c.not_converted.len(),
        expect.len(),
        "{:#?}",
        c.not_converted
    );
    // The location's add_header list replaces the server's, as in nginx.
    assert!(
        c.toml.contains("nginx.conf:21 add_header X-Frame-Options DENY: overridden by the add_header list at nginx.conf:"),
        "{}",
        c.toml
    );
    assert!(c
        .toml
        .contains("# Not converted (also printed by import-nginx):"));
    loads(&c.toml);
}

#[test]
fn push_restriction_nginx_cannot_express_in_regproxy_is_reported() {
    // Users outside the map may not even pull, but one named user is
    // refused everything while others may pull: no rule can deny a user.
    let text = RECIPE
        .replace(
            "      proxy_pass ",
            "      if ($blocked) { return 403; }\n      proxy_pass ",
        )
        .replace(
            "  server {",
            "  map $remote_user $blocked { default 0; mallory 1; }\n  server {",
        );
    let c = run(&text);
    assert!(
        c.not_converted
            .iter()
            .any(|l| l.contains("directive if not converted") && l.contains("cannot deny")),
        "{:#?}",
        c.not_converted
    );
    assert!(c
        .not_converted
        .iter()
        .any(|l| l.contains("directive map not converted")));
}

#[test]
fn values() {
    assert_eq!(server::listen_addr("443"), "0.0.0.0:443");
    assert_eq!(server::listen_addr("*:8443"), "0.0.0.0:8443");
    assert_eq!(server::listen_addr("[::]:443"), "[::]:443");
    assert_eq!(server::listen_addr("10.0.0.1"), "10.0.0.1:80");
    assert_eq!(
        out::nginx_time("1h30m"),
        Some(std::time::Duration::from_secs(5400))
    );
    assert_eq!(
        out::nginx_time("500ms"),
        Some(std::time::Duration::from_millis(500))
    );
    assert_eq!(out::nginx_time("x"), None);
    assert_eq!(out::nginx_size("10m"), Some(10 << 20));
    assert_eq!(out::string("a\"b\\\n"), "\"a\\\"b\\\\\\u000A\"");
}
