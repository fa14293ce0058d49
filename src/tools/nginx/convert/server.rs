//! The proxying server's front and back: `listen` and the TLS files, and
//! `proxy_pass` with its `upstream` block (servers, keep-alive, timeouts).

use std::collections::BTreeMap;
use std::path::Path;

use super::out::{list, origins, string, Table};
use super::{at, Cx, Directive, Levels};

impl Cx<'_> {
    pub(super) fn listen(&mut self, server: &Directive, levels: &Levels) {
        let listens: Vec<&Directive> = server
            .children()
            .iter()
            .filter(|d| d.name == "listen")
            .collect();
        let mut tls = levels.get(&mut self.out, "ssl").is_some_and(|d| {
            self.out.mark(d);
            d.args.first().is_some_and(|a| a == "on")
        });
        match listens.first() {
            None => {
                self.out.set(
                    Table::Top,
                    "listen",
                    string("0.0.0.0:80"),
                    format!(
                        "{} server without listen: nginx's default *:80",
                        server.at()
                    ),
                );
            }
            Some(l) => {
                let addr = l.args.first().map(String::as_str).unwrap_or("80");
                let flags = &l.args[1..];
                tls |= flags.iter().any(|f| f == "ssl");
                if addr.starts_with("unix:") || flags.iter().any(|f| f == "proxy_protocol") {
                    self.out
                        .skip(l, "regproxy listens on TCP without the PROXY protocol");
                } else {
                    let addr = listen_addr(addr);
                    self.out.mark(l);
                    let mut origin = at(l);
                    let extra: Vec<&str> = flags
                        .iter()
                        .map(String::as_str)
                        .filter(|f| *f != "ssl")
                        .collect();
                    if !extra.is_empty() {
                        origin.push_str(&format!(
                            " ({} not needed: HTTP/1.1, SO_REUSEPORT per core)",
                            extra.join(" ")
                        ));
                    }
                    self.out.set(Table::Top, "listen", string(&addr), origin);
                }
                for extra in &listens[1..] {
                    self.out
                        .skip(extra, "regproxy listens on one address (the first listen)");
                }
            }
        }
        let cert = levels.get(&mut self.out, "ssl_certificate");
        let key = levels.get(&mut self.out, "ssl_certificate_key");
        match (tls, cert, key) {
            (true, Some(c), Some(k)) => {
                for (d, table_key) in [(c, "cert"), (k, "key")] {
                    self.out.mark(d);
                    match d.args.first() {
                        Some(p) => {
                            let p = self.path(p);
                            self.out.set(Table::Tls, table_key, string(&p), at(d));
                        }
                        None => self.out.skip(d, "no file named"),
                    }
                }
            }
            (true, _, _) => self.out.problem(Some(server), format!(
                "{}: listen … ssl without ssl_certificate and ssl_certificate_key: [tls] not written",
                server.at()
            )),
            (false, c, k) => {
                for d in [c, k].into_iter().flatten() {
                    self.out
                        .built_in(d, "not used: no listen … ssl, so regproxy serves plain HTTP");
                }
            }
        }
    }

    /// A path from nginx: mapped by `--map-path`, else made absolute
    /// against nginx's prefix.
    pub(super) fn path(&self, p: &str) -> String {
        let p = Path::new(p);
        for (from, to) in &self.opts.map_paths {
            if let Ok(rest) = p.strip_prefix(from) {
                return to.join(rest).display().to_string();
            }
        }
        self.opts.conf_dir.join(p).display().to_string()
    }

    pub(super) fn upstream(
        &mut self,
        location: Option<&Directive>,
        upstreams: &BTreeMap<&str, &Directive>,
        levels: &Levels,
    ) {
        let Some(pass) =
            location.and_then(|l| l.children().iter().find(|d| d.name == "proxy_pass"))
        else {
            return;
        };
        let url = pass.args.first().map(String::as_str).unwrap_or("");
        let Some(rest) = url.strip_prefix("http://") else {
            self.out.skip(
                pass,
                "regproxy talks plain HTTP to the registry (an https:// or variable upstream is not converted)",
            );
            return;
        };
        let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let mut origin = vec![pass];
        let mut servers = Vec::new();
        if let Some(up) = upstreams.get(host) {
            self.out.mark(up);
            origin.push(up);
            for d in up.children() {
                match d.name.as_str() {
                    "server" => {
                        let Some(addr) = d.args.first() else {
                            self.out.skip(d, "server without an address");
                            continue;
                        };
                        let params: Vec<&String> = d.args[1..].iter().collect();
                        if addr.starts_with("unix:") {
                            self.out.skip(d, "regproxy reaches the registry over TCP");
                        } else if params.iter().any(|p| *p == "down" || *p == "backup") {
                            self.out.skip(
                                d,
                                "down and backup servers are not converted (round-robin only)",
                            );
                        } else {
                            if !params.is_empty() {
                                self.out.problem(Some(d), format!(
                                    "{}: server parameters {} not converted: regproxy round-robins evenly",
                                    d.at(),
                                    params.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(" ")
                                ));
                            }
                            self.out.mark(d);
                            origin.push(d);
                            servers.push(self.upstream_addr(addr));
                        }
                    }
                    "keepalive" => match d.args.first().and_then(|n| n.parse::<usize>().ok()) {
                        Some(n) => {
                            self.out.mark(d);
                            self.out.set(
                                Table::Upstream,
                                "max_idle_per_worker",
                                n.to_string(),
                                format!(
                                    "{} (idle connections per worker, as nginx counts them)",
                                    at(d)
                                ),
                            );
                        }
                        None => self.out.skip(d, "expected a number"),
                    },
                    "keepalive_timeout" => self.time(d, Table::Upstream, "idle_timeout"),
                    "keepalive_requests" | "keepalive_time" => self.out.built_in(
                        d,
                        "regproxy reuses a connection until it idles out or the registry closes it",
                    ),
                    _ => self.out.skip(d, "regproxy round-robins over the servers"),
                }
            }
        } else {
            servers.push(self.upstream_addr(host));
        }
        if !path.is_empty() && location.is_none_or(|l| l.args.last().is_none_or(|p| p != path)) {
            self.out.problem(Some(pass), format!(
                "{}: proxy_pass URI {path} not converted: regproxy forwards the request path unchanged",
                pass.at()
            ));
        }
        self.out.mark(pass);
        if !servers.is_empty() {
            self.out
                .set(Table::Upstream, "servers", list(&servers), origins(&origin));
        }
        for (name, table, key) in [
            ("proxy_read_timeout", Table::Upstream, "read_timeout"),
            ("proxy_connect_timeout", Table::Upstream, "connect_timeout"),
        ] {
            if let Some(d) = levels.get(&mut self.out, name) {
                self.time(d, table, key);
            }
        }
    }

    /// `host[:port]` with `--resolve` applied (to the whole `host:port` or
    /// to the host) and nginx's default port 80.
    pub(super) fn upstream_addr(&self, addr: &str) -> String {
        if let Some((_, to)) = self.opts.resolve.iter().find(|(from, _)| from == addr) {
            return to.clone();
        }
        let (host, port) = split_host_port(addr);
        let host = self
            .opts
            .resolve
            .iter()
            .find(|(from, _)| from == host)
            .map_or(host, |(_, to)| to.as_str());
        let port = port.unwrap_or("80");
        if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        }
    }
}

/// nginx `listen` address forms → `IP:PORT`.
pub(super) fn listen_addr(addr: &str) -> String {
    if addr.bytes().all(|b| b.is_ascii_digit()) {
        return format!("0.0.0.0:{addr}");
    }
    if let Some(port) = addr.strip_prefix("*:") {
        return format!("0.0.0.0:{port}");
    }
    let (host, port) = split_host_port(addr);
    match port {
        Some(_) => addr.to_owned(),
        None if host.contains(':') && !host.starts_with('[') => format!("[{host}]:80"),
        None => format!("{host}:80"),
    }
}

/// `host:port`, `[v6]:port`, `host` → (host, port).
fn split_host_port(addr: &str) -> (&str, Option<&str>) {
    if let Some(rest) = addr.strip_prefix('[') {
        if let Some((host, tail)) = rest.split_once(']') {
            return (host, tail.strip_prefix(':'));
        }
    }
    match addr.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, Some(p)),
        _ => (addr, None),
    }
}
