use super::*;

pub(super) fn fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("users"), "").expect("write");
    dir
}

/// The test's own files, and two cores.
struct Disk;

impl Host for Disk {
    fn is_file(&self, path: &Path) -> bool {
        path.is_file()
    }
    fn resolve(&self, host_port: &str) -> Result<SocketAddr, String> {
        Err(format!("cannot resolve {host_port:?}"))
    }
    fn cores(&self) -> usize {
        2
    }
    fn is_not_directory(&self, path: &Path) -> bool {
        std::fs::metadata(path).is_ok_and(|m| !m.is_dir())
    }
}

pub(super) fn parse(dir: &Path, text: &str) -> Result<Config, ConfigError> {
    Config::parse(&dir.join("regproxy.toml"), text, &Disk)
}

pub(super) const MINIMAL: &str = r#"
listen = "127.0.0.1:5043"
[auth]
htpasswd = "users"
[upstream]
servers = ["127.0.0.1:5000"]
"#;

/// Pinned unless the registry is on this host, and the key wins.
#[test]
fn workers_are_pinned_unless_the_registry_is_local() {
    let dir = fixture();
    let remote = MINIMAL.replace("127.0.0.1:5000", "192.0.2.7:5000");
    assert!(!parse(dir.path(), MINIMAL).expect("valid").pin_workers);
    assert!(parse(dir.path(), &remote).expect("valid").pin_workers);
    let v6 = MINIMAL.replace("\"127.0.0.1:5000\"", "\"[::1]:5000\", \"192.0.2.7:5000\"");
    assert!(!parse(dir.path(), &v6).expect("valid").pin_workers);
    let forced = format!("pin_workers = true\n{MINIMAL}");
    assert!(parse(dir.path(), &forced).expect("valid").pin_workers);
    let off = format!("pin_workers = false\n{remote}");
    assert!(!parse(dir.path(), &off).expect("valid").pin_workers);
    let bad = format!("pin_workers = \"yes\"\n{MINIMAL}");
    let err = parse(dir.path(), &bad).expect_err("a string").to_string();
    assert!(
        err.contains(":1:") && err.contains("expected a boolean"),
        "{err}"
    );
}

#[test]
fn minimal_config_gets_defaults() {
    let dir = fixture();
    let c = parse(dir.path(), MINIMAL).expect("valid");
    assert_eq!(c.listen, "127.0.0.1:5043".parse().expect("addr"));
    assert!(c.workers >= 1);
    assert!(c.tls.is_none());
    assert_eq!(c.auth.realm, "Registry realm");
    assert_eq!(c.auth.cache_ttl, Duration::from_secs(300));
    assert_eq!(c.auth.htpasswd, dir.path().join("users"));
    assert_eq!(c.upstream.read_timeout, Duration::from_secs(900));
    assert_eq!(c.access_log, AccessLogTarget::Stdout);
    assert!(!c.forwarding.trust_forwarded_headers);
    assert!(!c.forwarding.forward_authorization);
}

#[test]
fn connection_caps_default_to_derived_and_reject_zero_with_its_line() {
    let dir = fixture();
    let c = parse(dir.path(), MINIMAL).expect("valid");
    assert_eq!((c.max_connections, c.max_connections_per_ip), (None, None));
    let text = format!("max_connections = 5000\nmax_connections_per_ip = 0\n{MINIMAL}");
    let c = parse(dir.path(), &text).expect("valid");
    assert_eq!(
        (c.max_connections, c.max_connections_per_ip),
        (Some(5000), Some(0))
    );
    let text = format!("\nmax_connections = 0\n{MINIMAL}");
    let msg = parse(dir.path(), &text).expect_err("zero").to_string();
    assert!(
        msg.contains(":2:") && msg.contains("max_connections = 0"),
        "{msg}"
    );
    let text = format!("max_connections_per_ip = -1\n{MINIMAL}");
    assert!(parse(dir.path(), &text).is_err());
}

#[test]
fn bad_duration_names_line() {
    let dir = fixture();
    let text = MINIMAL.replace("[upstream]", "cache_ttl = \"5 parsecs\"\n[upstream]");
    let e = parse(dir.path(), &text).expect_err("invalid");
    let msg = e.to_string();
    assert_eq!(e.line, 5, "{msg}");
    assert!(msg.contains("regproxy.toml:5:"), "{msg}");
    assert!(msg.contains("invalid duration"), "{msg}");
}

#[test]
fn log_format_and_top_repositories() {
    let dir = fixture();
    let c = parse(dir.path(), MINIMAL).expect("valid");
    assert_eq!(c.access_log_format, LogFormat::Text);
    assert_eq!(c.top_repositories, 0);
    let text = format!(
        "{MINIMAL}[log]\nformat = \"json\"\n[admin]\nlisten = \"127.0.0.1:0\"\ntop_repositories = 7\n"
    );
    let c = parse(dir.path(), &text).expect("valid");
    assert_eq!(c.access_log_format, LogFormat::Json);
    assert_eq!(c.top_repositories, 7);
    let e = parse(dir.path(), &format!("{MINIMAL}[log]\nformat = \"xml\"\n")).expect_err("bad");
    assert_eq!(e.line, 8, "{e}");
    assert!(
        e.to_string()
            .contains("log.format: \"xml\" is not a format"),
        "{e}"
    );
    let text = format!("{MINIMAL}[admin]\nlisten = \"127.0.0.1:0\"\ntop_repositories = 101\n");
    let e = parse(dir.path(), &text).expect_err("bad");
    assert_eq!(e.line, 9, "{e}");
    assert!(e.message.contains("at most 100"), "{e}");
}

#[test]
fn unknown_key_is_refused() {
    let dir = fixture();
    let text = MINIMAL.replace("[auth]", "[auth]\nhtpassword = \"x\"");
    let e = parse(dir.path(), &text).expect_err("invalid");
    assert_eq!(e.line, 4);
    assert!(e.message.contains("unknown field `htpassword`"), "{e}");
}

#[test]
fn missing_file_names_key_and_line() {
    let dir = fixture();
    let text = MINIMAL.replace("\"users\"", "\"nope\"");
    let e = parse(dir.path(), &text).expect_err("invalid");
    assert_eq!(e.line, 4);
    assert!(e.message.contains("auth.htpasswd: no such file"), "{e}");
}

#[test]
fn bad_listen_and_servers() {
    let dir = fixture();
    let e =
        parse(dir.path(), &MINIMAL.replace("127.0.0.1:5043", "localhost")).expect_err("no port");
    assert_eq!(e.line, 2);
    assert!(e.message.contains("needs a port"), "{e}");
    let e = parse(dir.path(), &MINIMAL.replace("[\"127.0.0.1:5000\"]", "[]")).expect_err("empty");
    assert_eq!(e.line, 6);
}

#[test]
fn syntax_error_is_located() {
    let dir = fixture();
    let e = parse(dir.path(), "listen = \n").expect_err("syntax");
    assert_eq!(e.line, 1);
}

#[test]
fn access_rules_are_validated_with_their_line() {
    let dir = fixture();
    let ok = format!(
        "{MINIMAL}\n[groups]\nteam-a = [\"alice\"]\n\n[[access]]\nrepository = \"team-a/**\"\nwho = [\"@team-a\"]\nactions = [\"pull\", \"push\"]\n"
    );
    let c = parse(dir.path(), &ok).expect("valid");
    assert_eq!(c.access.as_ref().map(Vec::len), Some(1));
    assert_eq!(c.groups["team-a"], vec!["alice".to_owned()]);

    let bad = ok.replace("\"push\"]", "\"fly\"]");
    let e = parse(dir.path(), &bad).expect_err("bad action");
    assert!(e.line >= 10, "{e}");
    assert!(e.message.contains("[[access]] rule"), "{e}");

    let both = ok.replace("[auth]", "[auth]\npush_users = [\"x\"]");
    let e = parse(dir.path(), &both).expect_err("both");
    assert!(e.message.contains("cannot be used together"), "{e}");
}

#[test]
fn trusted_proxies_are_cidrs_with_located_errors() {
    let dir = fixture();
    let ok = format!("{MINIMAL}[forwarding]\ntrusted_proxies = [\"10.0.0.0/8\", \"::1\"]\n");
    let c = parse(dir.path(), &ok).expect("valid");
    assert_eq!(c.forwarding.trusted_proxies.len(), 2);
    let e = parse(dir.path(), &ok.replace("10.0.0.0/8", "10.0.0.1/8")).expect_err("host bits");
    assert_eq!(e.line, 8, "{e}");
    assert!(e.message.contains("forwarding.trusted_proxies"), "{e}");
}

#[test]
fn sizes_take_units_and_name_the_line() {
    assert_eq!(parse_size("64MiB"), Some(64 << 20));
    assert_eq!(parse_size("64m"), Some(64 << 20));
    assert_eq!(parse_size("1g"), Some(1 << 30));
    assert_eq!(parse_size("512 KiB"), Some(512 << 10));
    assert_eq!(parse_size("0"), Some(0));
    for bad in ["", "m", "1.5m", "12x", "-1", "99999999999999999999g"] {
        assert_eq!(parse_size(bad), None, "{bad}");
    }
    let dir = fixture();
    let c = parse(
        dir.path(),
        &format!("{MINIMAL}[client]\ndiscard_limit = \"1m\"\n"),
    )
    .expect("valid");
    assert_eq!(c.client.lingering.discard_limit, 1 << 20);
    assert_eq!(c.client.lingering.time, Duration::from_secs(30));
    assert_eq!(c.client.lingering.timeout, Duration::from_secs(5));
    let c = parse(
        dir.path(),
        &format!("{MINIMAL}[client]\ndiscard_limit = 0\n"),
    )
    .expect("valid");
    assert_eq!(c.client.lingering.discard_limit, 0);
    let e = parse(
        dir.path(),
        &format!("{MINIMAL}[client]\ndiscard_limit = \"lots\"\n"),
    )
    .expect_err("bad size");
    assert_eq!(e.line, 8, "{e}");
    assert!(e.message.contains("invalid size"), "{e}");
}

#[test]
fn proxy_protocol_needs_trusted_proxies() {
    let dir = fixture();
    let c = parse(dir.path(), MINIMAL).expect("valid");
    assert_eq!(c.proxy_protocol, ProxyMode::Off);
    let on = format!("proxy_protocol = \"v2\"\n{MINIMAL}");
    let e = parse(dir.path(), &on).expect_err("no trusted proxies");
    assert_eq!(e.line, 1, "{e}");
    assert!(e.message.contains("trusted_proxies"), "{e}");
    let ok = format!("{on}[forwarding]\ntrusted_proxies = [\"127.0.0.1\"]\n");
    assert_eq!(
        parse(dir.path(), &ok).expect("valid").proxy_protocol,
        ProxyMode::V2
    );
    for (text, mode) in [
        ("v1", ProxyMode::V1),
        ("optional", ProxyMode::Optional),
        ("off", ProxyMode::Off),
    ] {
        let c = parse(dir.path(), &ok.replace("\"v2\"", &format!("\"{text}\""))).expect("valid");
        assert_eq!(c.proxy_protocol, mode);
    }
    let e = parse(dir.path(), &ok.replace("\"v2\"", "\"v3\"")).expect_err("unknown");
    assert_eq!(e.line, 1, "{e}");
}

#[test]
fn line_col_counts_from_one() {
    assert_eq!(line_col("ab\ncd", 0), (1, 1));
    assert_eq!(line_col("ab\ncd", 4), (2, 2));
}
