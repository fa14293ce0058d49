//! From a parsed nginx configuration (the registry recipe's shape and the
//! variations people make of it) to `regproxy.toml` text.
//!
//! Pipeline role: `regproxy import-nginx` reads the files with
//! [`super::load`], calls [`convert`], writes [`Conversion::toml`] and prints
//! [`Conversion::not_converted`]. Pure: no file is read here.
//!
//! Settings follow nginx's inheritance: the value in the `/v2/` location
//! wins over the server's, which wins over `http`'s; `proxy_set_header` and
//! `add_header` lists are taken whole from the innermost level that has
//! any, as nginx does. Every directive ends up in exactly one place: a
//! value in the TOML (with a comment naming it), the "built into regproxy"
//! list at the end, or a `FILE:LINE: directive X not converted: why` line.
//! A last pass reports any directive no handler looked at, so nothing is
//! dropped silently.

mod access;
mod auth;
mod out;
mod server;

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::rewrite::{self, Map, Outcome};
use super::Directive;
use out::{duration, list, nginx_size, nginx_time, origins, string, summary, Out, Table};

/// What the caller knows that the nginx files do not.
#[derive(Debug, Default, Clone)]
pub struct Options {
    /// The folder of the main nginx file: nginx resolves relative paths
    /// against it.
    pub conf_dir: PathBuf,
    /// Path prefixes to rewrite (`/etc/nginx/conf.d` → `./auth`), for files
    /// nginx saw at another path (a container's volume).
    pub map_paths: Vec<(PathBuf, PathBuf)>,
    /// Upstream host names to replace (`registry` → `127.0.0.1`), for names
    /// only nginx's network resolves (a compose link).
    pub resolve: Vec<(String, String)>,
}

/// The result: the TOML text and what could not be converted.
#[derive(Debug)]
pub struct Conversion {
    pub toml: String,
    /// `FILE:LINE: directive X not converted: why`, one per directive.
    pub not_converted: Vec<String>,
}

/// The recipe's user-agent block; regproxy applies exactly this by itself
/// (`policy::is_blocked_user_agent`).
const RECIPE_USER_AGENT_RE: &str = r"^(docker\/1\.(3|4|5(?!\.[0-9]-dev))|Go ).*$";

/// A user name that no map key can equal (nginx user names hold no NUL):
/// stands for "any other valid user" when evaluating maps.
const OTHER_USER: &str = "\0other";

/// Converts `tree`, read from `source` (named in the header comment).
pub fn convert(tree: &[Directive], source: &str, opts: &Options) -> Conversion {
    let mut cx = Cx {
        out: Out::default(),
        opts,
    };
    let mut http = None;
    for d in tree {
        match d.name.as_str() {
            "http" if http.is_none() => http = Some(d),
            "http" => cx.out.skip(d, "a second http block"),
            "events" => cx.events(d),
            "worker_processes" => {
                let n = match d.args.first().map(String::as_str) {
                    Some("auto") => Some(0),
                    Some(n) => n.parse::<usize>().ok(),
                    None => None,
                };
                match n {
                    Some(n) => {
                        cx.out.mark(d);
                        cx.out.set(Table::Top, "workers", n.to_string(), at(d));
                    }
                    None => cx.out.skip(d, "expected a number or auto"),
                }
            }
            "worker_cpu_affinity" => {
                // nginx pins only when told to; regproxy's default depends
                // on where the registry is (`config::pin_by_default`).
                cx.out.mark(d);
                cx.out
                    .set(Table::Top, "pin_workers", "true".to_owned(), at(d));
                if d.args.first().is_some_and(|a| a != "auto") {
                    cx.out.note(format!(
                        "{}: CPU masks are not kept: worker i is pinned to the i-th allowed core",
                        at(d)
                    ));
                }
            }
            "user"
            | "pid"
            | "daemon"
            | "master_process"
            | "worker_rlimit_nofile"
            | "pcre_jit"
            | "worker_priority"
            | "env" => cx.out.built_in(
                d,
                "process setting; regproxy runs as one process, a thread per core",
            ),
            "error_log" => cx
                .out
                .built_in(d, "regproxy's own log goes to stderr (--log)"),
            "stream" | "mail" => cx.out.skip(d, "regproxy proxies the registry's HTTP only"),
            _ => {}
        }
    }
    match http {
        Some(h) => cx.http(h),
        None => cx
            .out
            .problem(None, format!("{source}: no http block: nothing to convert")),
    }
    cx.required_keys(source);
    // Whatever no handler looked at.
    for d in tree {
        report_unseen(&mut cx.out, d);
    }
    Conversion {
        toml: cx.out.render(source),
        not_converted: cx.out.not_converted(),
    }
}

fn report_unseen(out: &mut Out, d: &Directive) {
    if !out.is_seen(d) {
        out.skip(d, "import-nginx does not know it");
        return;
    }
    for c in d.children() {
        report_unseen(out, c);
    }
}

fn at(d: &Directive) -> String {
    format!("{} {}", d.at(), summary(d))
}

/// The levels a setting can come from, outermost first.
struct Levels<'a> {
    http: &'a [Directive],
    server: &'a [Directive],
    location: &'a [Directive],
}

impl<'a> Levels<'a> {
    /// The innermost directive `name` (the last one within a level), marking
    /// the shadowed ones.
    fn get(&self, out: &mut Out, name: &str) -> Option<&'a Directive> {
        let mut found: Option<&'a Directive> = None;
        for level in [self.location, self.server, self.http] {
            for d in level.iter().rev().filter(|d| d.name == name) {
                match found {
                    None => found = Some(d),
                    Some(f) => out.built_in(d, &format!("overridden by {}", f.at())),
                }
            }
        }
        found
    }

    /// All of `name` from the innermost level that has any (nginx's rule for
    /// `proxy_set_header` and `add_header`); the outer ones are overridden.
    fn list(&self, out: &mut Out, name: &str) -> Vec<&'a Directive> {
        let mut chosen: Option<Vec<&'a Directive>> = None;
        for level in [self.location, self.server, self.http] {
            let here: Vec<&'a Directive> = level.iter().filter(|d| d.name == name).collect();
            if here.is_empty() {
                continue;
            }
            match &chosen {
                None => chosen = Some(here),
                Some(c) => {
                    let by = c[0].at();
                    for d in here {
                        out.built_in(d, &format!("overridden by the {name} list at {by}"));
                    }
                }
            }
        }
        chosen.unwrap_or_default()
    }
}

/// Conversion state.
struct Cx<'o> {
    out: Out,
    opts: &'o Options,
}

impl Cx<'_> {
    /// regproxy refuses a config without these; write a placeholder and say
    /// so rather than a file that does not load.
    fn required_keys(&mut self, source: &str) {
        if !self.out.has(Table::Auth, "htpasswd") {
            self.out.problem(None, format!(
                "{source}: no auth_basic_user_file: regproxy needs an htpasswd file; edit [auth] htpasswd"
            ));
            self.out.set(
                Table::Auth,
                "htpasswd",
                string("htpasswd"),
                "placeholder: nginx had no auth_basic_user_file".into(),
            );
        }
        if !self.out.has(Table::Upstream, "servers") {
            self.out.problem(
                None,
                format!("{source}: no proxy_pass to convert: edit [upstream] servers"),
            );
            self.out.set(
                Table::Upstream,
                "servers",
                list(&["127.0.0.1:5000"]),
                "placeholder: nginx had no usable proxy_pass".into(),
            );
        }
    }

    fn events(&mut self, d: &Directive) {
        self.out.mark(d);
        for c in d.children() {
            match c.name.as_str() {
                "worker_connections" => self.out.built_in(
                    c,
                    "no per-worker connection cap; bounded by file descriptors",
                ),
                "use" | "multi_accept" | "accept_mutex" => self.out.built_in(
                    c,
                    "regproxy uses io_uring (else epoll), one listener per core",
                ),
                _ => {}
            }
        }
    }

    fn http(&mut self, http: &Directive) {
        self.out.mark(http);
        let mut maps: BTreeMap<String, (Map, &Directive)> = BTreeMap::new();
        let mut upstreams: BTreeMap<&str, &Directive> = BTreeMap::new();
        let mut servers = Vec::new();
        for d in http.children() {
            match d.name.as_str() {
                "map" => match Map::parse(d) {
                    Some((var, m)) => {
                        maps.insert(var, (m, d));
                    }
                    None => self.out.skip(d, "expected map SOURCE $VARIABLE { … }"),
                },
                "upstream" => match d.args.first() {
                    Some(name) => {
                        upstreams.insert(name, d);
                    }
                    None => self.out.skip(d, "upstream without a name"),
                },
                "server" => servers.push(d),
                _ => {}
            }
        }
        // The server that proxies: the first with a proxy_pass somewhere.
        let main = servers
            .iter()
            .position(|s| has_proxy_pass(s))
            .or(if servers.is_empty() { None } else { Some(0) });
        for (i, s) in servers.iter().enumerate() {
            if Some(i) != main {
                let listen = s
                    .children()
                    .iter()
                    .find(|d| d.name == "listen")
                    .map_or("80".to_owned(), |l| l.args.join(" "));
                self.out.skip(
                    s,
                    &format!(
                        "regproxy serves one listener; this server (listen {listen}) is another"
                    ),
                );
            }
        }
        let Some(server) = main.map(|i| servers[i]) else {
            self.out.problem(
                Some(http),
                format!(
                    "{}: http block without a server: nothing to convert",
                    http.at()
                ),
            );
            return;
        };
        self.server(http, server, &maps, &upstreams);
        for (m, d) in maps.values() {
            if !self.out.is_seen(d) {
                if m.source == "$upstream_http_docker_distribution_api_version" {
                    self.out.built_in(
                        d,
                        "every response carries Docker-Distribution-Api-Version: registry/2.0",
                    );
                } else {
                    self.out.skip(
                        d,
                        "regproxy has no variables, and nothing converted uses this map",
                    );
                }
            }
        }
        for d in upstreams.values() {
            if !self.out.is_seen(d) {
                self.out.skip(d, "no proxy_pass uses this upstream");
            }
        }
        for d in http.children() {
            self.common(d);
        }
    }

    fn server(
        &mut self,
        http: &Directive,
        server: &Directive,
        maps: &BTreeMap<String, (Map, &Directive)>,
        upstreams: &BTreeMap<&str, &Directive>,
    ) {
        self.out.mark(server);
        // The location that proxies /v2/: the first /v2 one with a
        // proxy_pass, else the first with any proxy_pass.
        let locations: Vec<&Directive> = server
            .children()
            .iter()
            .filter(|d| d.name == "location")
            .collect();
        let is_v2 = |d: &&Directive| d.args.last().is_some_and(|p| p.contains("/v2"));
        let main = locations
            .iter()
            .position(|d| is_v2(d) && has_proxy_pass(d))
            .or_else(|| locations.iter().position(|d| has_proxy_pass(d)));
        for (i, l) in locations.iter().enumerate() {
            if Some(i) != main {
                self.out
                    .skip(l, "regproxy proxies /v2/ only; every other path gets 404");
            }
        }
        let location = main.map(|i| locations[i]);
        if let Some(l) = location {
            self.out.mark(l);
            if !is_v2(&l) {
                self.out.note(format!(
                    "{} {}: regproxy proxies /v2/ (the registry API) only; other paths get 404",
                    l.at(),
                    summary(l)
                ));
            }
        }
        let levels = Levels {
            http: http.children(),
            server: server.children(),
            location: location.map_or(&[][..], |l| l.children()),
        };
        self.listen(server, &levels);
        self.upstream(location, upstreams, &levels);
        self.settings(&levels);
        self.forwarding(location, &levels);
        self.access(location, &levels, maps);
        for d in server.children() {
            self.common(d);
        }
        if let Some(l) = location {
            for d in l.children() {
                self.common(d);
            }
        }
    }

    /// Directives that mean the same wherever they stand.
    fn common(&mut self, d: &Directive) {
        if self.out.is_seen(d) {
            return;
        }
        let why = match d.name.as_str() {
            "server_name" => "regproxy answers for any Host name",
            "sendfile" | "tcp_nopush" | "tcp_nodelay" | "aio" | "directio" | "output_buffers" => {
                "socket tuning; regproxy splices bodies between plain sockets"
            }
            "types" | "default_type" | "charset" | "server_tokens" | "etag" => {
                "regproxy serves no files; the registry sets its own headers"
            }
            "resolver" | "resolver_timeout" => "upstream names are resolved once at start",
            "proxy_http_version" => "regproxy speaks HTTP/1.1 with keep-alive to the registry",
            "proxy_buffering"
            | "proxy_request_buffering"
            | "proxy_buffers"
            | "proxy_buffer_size"
            | "proxy_busy_buffers_size"
            | "proxy_max_temp_file_size"
            | "proxy_temp_path"
            | "client_body_buffer_size"
            | "client_body_temp_path"
            | "client_body_in_file_only" => {
                "bodies stream through fixed buffers, never spooled to disk"
            }
            "real_ip_recursive" => "the chain is walked through trusted_proxies",
            "ssl_protocols" => {
                "regproxy offers TLS 1.2 and 1.3 (rustls); TLSv1 and TLSv1.1 are not offered"
            }
            "ssl_ciphers" | "ssl_prefer_server_ciphers" | "ssl_ecdh_curve" | "ssl_dhparam" => {
                "rustls' AEAD-only suites with forward secrecy, server preference; not configurable"
            }
            "ssl_session_cache" | "ssl_session_timeout" | "ssl_session_tickets" => {
                "rustls session tickets and a small per-process cache"
            }
            "error_log" => "regproxy's own log goes to stderr (--log)",
            "proxy_redirect" if d.args.first().is_some_and(|a| a == "off") => {
                "Location headers pass untouched"
            }
            "gzip" if d.args.first().is_some_and(|a| a == "off") => "regproxy never compresses",
            "allow" | "deny" | "satisfy" => {
                self.out.skip(
                    d,
                    "address-based access control; put it in a firewall or the balancer",
                );
                return;
            }
            "log_format" => {
                self.out
                    .skip(d, "regproxy's access log has its own fixed format");
                return;
            }
            "ssl_stapling"
            | "ssl_stapling_verify"
            | "ssl_trusted_certificate"
            | "ssl_client_certificate"
            | "ssl_verify_client"
            | "ssl_verify_depth" => {
                self.out
                    .skip(d, "regproxy has no OCSP stapling or client certificates");
                return;
            }
            "rewrite" | "return" | "if" | "set" => {
                self.out
                    .skip(d, "rewrites outside the /v2/ location are not converted");
                return;
            }
            _ => return,
        };
        self.out.built_in(d, why);
    }

    fn time(&mut self, d: &Directive, table: Table, key: &'static str) {
        match d.args.first().and_then(|t| nginx_time(t)) {
            Some(t) => {
                self.out.mark(d);
                self.out.set(table, key, duration(t), at(d));
            }
            None => self.out.skip(d, "not an nginx time value"),
        }
    }

    /// Timeouts, body limits, logs.
    fn settings(&mut self, levels: &Levels) {
        for (name, key) in [
            ("client_header_timeout", "header_timeout"),
            ("client_body_timeout", "body_timeout"),
            ("keepalive_timeout", "idle_timeout"),
        ] {
            if let Some(d) = levels.get(&mut self.out, name) {
                if d.args.first().is_some_and(|a| a == "0") {
                    self.out.skip(d, "regproxy always keeps connections alive");
                } else {
                    self.time(d, Table::Client, key);
                }
            }
        }
        if let Some(d) = levels.get(&mut self.out, "client_max_body_size") {
            match d.args.first().and_then(|s| nginx_size(s)) {
                Some(0) => self.out.built_in(
                    d,
                    "no body size limit, ever; bodies stream with bounded memory",
                ),
                _ => self.out.skip(
                    d,
                    "regproxy sets no body size limit (nginx answered 413 above it)",
                ),
            }
        }
        if let Some(d) = levels.get(&mut self.out, "chunked_transfer_encoding") {
            if d.args.first().is_some_and(|a| a == "on") {
                self.out
                    .built_in(d, "chunked requests and responses always work");
            } else {
                self.out.skip(
                    d,
                    "regproxy always accepts chunked bodies (docker needs them)",
                );
            }
        }
        if let Some(d) = levels.get(&mut self.out, "proxy_send_timeout") {
            self.out.skip(
                d,
                "regproxy has no separate timeout for writes to the registry",
            );
        }
        if let Some(d) = levels.get(&mut self.out, "access_log") {
            match d.args.first().map(String::as_str) {
                Some("off") => {
                    self.out.mark(d);
                    self.out.set(Table::Log, "access", string("off"), at(d));
                }
                Some(p) if !p.starts_with("syslog:") => {
                    self.out.mark(d);
                    let p = self.path(p);
                    self.out.set(
                        Table::Log,
                        "access",
                        string(&p),
                        format!("{} (regproxy's own line format)", at(d)),
                    );
                }
                _ => self.out.skip(d, "regproxy logs to a file or stdout"),
            }
        }
        let real_ip: Vec<&Directive> = [levels.location, levels.server, levels.http]
            .iter()
            .flat_map(|l| l.iter().filter(|d| d.name == "set_real_ip_from"))
            .collect();
        if !real_ip.is_empty() {
            let cidrs: Vec<&str> = real_ip
                .iter()
                .filter_map(|d| d.args.first().map(String::as_str))
                .collect();
            for d in &real_ip {
                self.out.mark(d);
            }
            self.out.set(
                Table::Forwarding,
                "trusted_proxies",
                list(&cidrs),
                origins(&real_ip),
            );
            self.out.set(
                Table::Forwarding,
                "trust_forwarded_headers",
                "true".into(),
                origins(&real_ip),
            );
        }
        if let Some(d) = levels.get(&mut self.out, "real_ip_header") {
            if d.args
                .first()
                .is_some_and(|h| h.eq_ignore_ascii_case("X-Forwarded-For"))
            {
                self.out
                    .built_in(d, "regproxy reads X-Forwarded-For from trusted_proxies");
            } else {
                self.out.skip(
                    d,
                    "regproxy takes the client address from X-Forwarded-For only",
                );
            }
        }
    }

    /// `proxy_set_header` and `add_header`, and the trusted-balancer variant.
    fn forwarding(&mut self, location: Option<&Directive>, levels: &Levels) {
        let Some(location) = location else {
            return;
        };
        let headers = levels.list(&mut self.out, "proxy_set_header");
        let mut forwarded_for_set = false;
        let mut trust_from: Vec<&Directive> = Vec::new();
        for d in &headers {
            let [name, value] = d.args.as_slice() else {
                self.out.skip(d, "expected a header name and a value");
                continue;
            };
            let why = match (name.to_ascii_lowercase().as_str(), value.as_str()) {
                ("host", "$http_host") => "regproxy forwards Host as the client sent it",
                ("host", "$host" | "$host:$server_port") => {
                    "regproxy forwards Host as the client sent it, port included (docker builds upload URLs from it)"
                }
                ("x-real-ip", "$remote_addr") => "X-Real-IP is the client's address",
                ("x-forwarded-for", "$proxy_add_x_forwarded_for" | "$remote_addr") => {
                    forwarded_for_set = true;
                    "X-Forwarded-For carries the client's address (appended to a trusted balancer's chain only)"
                }
                ("x-forwarded-proto", "$scheme") => "X-Forwarded-Proto is https on TLS, else http",
                ("connection", "" | "$connection_upgrade") | ("upgrade", "$http_upgrade") => {
                    "regproxy keeps its own keep-alive to the registry"
                }
                ("x-real-ip", "$http_x_real_ip")
                | ("x-forwarded-for", "$http_x_forwarded_for")
                | ("x-forwarded-proto", "$http_x_forwarded_proto") => {
                    forwarded_for_set |= name.eq_ignore_ascii_case("x-forwarded-for");
                    trust_from.push(d);
                    self.out.mark(d);
                    continue;
                }
                ("authorization", "") => {
                    self.out.mark(d);
                    self.out.set(Table::Forwarding, "forward_authorization", "false".into(), at(d));
                    continue;
                }
                ("authorization", "$http_authorization") => {
                    self.out.mark(d);
                    self.out.set(Table::Forwarding, "forward_authorization", "true".into(), at(d));
                    continue;
                }
                _ => {
                    self.out.skip(
                        d,
                        "regproxy sends a fixed set of headers to the registry (docs/configuration.md: What the registry sees)",
                    );
                    continue;
                }
            };
            self.out.built_in(d, why);
        }
        if !headers.iter().any(|d| {
            d.args
                .first()
                .is_some_and(|n| n.eq_ignore_ascii_case("host"))
        }) {
            self.out.note(format!(
                "{} {}: nginx sent the upstream's name as Host here; regproxy forwards the client's Host, which docker needs",
                location.at(),
                summary(location)
            ));
        }
        if !forwarded_for_set {
            // The recipe's advice behind an ELB: drop the lines, so the
            // balancer's X-Forwarded-* reach the registry untouched.
            let origin = format!(
                "{} sets no X-Forwarded-For: the balancer's X-Forwarded-* reach the registry",
                location.at()
            );
            self.out.set(
                Table::Forwarding,
                "trust_forwarded_headers",
                "true".into(),
                origin,
            );
        } else if !trust_from.is_empty() {
            self.out.set(
                Table::Forwarding,
                "trust_forwarded_headers",
                "true".into(),
                origins(&trust_from),
            );
        }
        if !self.out.has(Table::Forwarding, "forward_authorization") {
            self.out.note(format!(
                "{} {}: nginx passed the client's Authorization to the registry; regproxy removes it (forward_authorization = true keeps it)",
                location.at(),
                summary(location)
            ));
        }
        for d in levels.list(&mut self.out, "add_header") {
            if d.args
                .first()
                .is_some_and(|h| h.eq_ignore_ascii_case("Docker-Distribution-Api-Version"))
            {
                self.out.built_in(
                    d,
                    "every response carries Docker-Distribution-Api-Version: registry/2.0 (the registry's own value passes)",
                );
            } else {
                self.out.skip(d, "regproxy adds no custom response headers");
            }
        }
    }
}

/// Does `d` (a server or location) contain a proxy_pass, at any depth?
fn has_proxy_pass(d: &Directive) -> bool {
    d.children()
        .iter()
        .any(|c| c.name == "proxy_pass" || has_proxy_pass(c))
}

#[cfg(test)]
mod tests;
