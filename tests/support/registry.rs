//! A real CNCF distribution registry (`docker-registry serve`, 2.8) on a
//! free loopback port, with its storage in a temporary directory.
//!
//! Its stdout is the combined access log (one line per HTTP request, written
//! when the response completes), captured to `access.log`; its stderr is the
//! application log (`listening on ...`, `response completed ...`), captured
//! to `registry.log`. [`Registry::request_count`] counts access-log lines, so
//! a test can prove that nothing reached the upstream.
//!
//! With [`RegistryOpts::tls`] it serves HTTPS only (`http.tls`), for a
//! regproxy that reaches its upstream over TLS.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use tempfile::TempDir;

/// `User-Agent` of the harness's own readiness probes; such requests are
/// left out of [`Registry::requests`] and [`Registry::request_count`].
pub const PROBE_USER_AGENT: &str = "regproxy-support-probe";

const START_TIMEOUT: Duration = Duration::from_secs(30);

/// One line of the registry's access log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedRequest {
    pub method: String,
    pub uri: String,
    pub status: u16,
    pub user_agent: String,
}

/// Options for [`Registry::start_with`].
#[derive(Debug, Clone, Default)]
pub struct RegistryOpts {
    /// Filesystem storage root; `None`: a fresh one in the temp dir.
    pub storage: Option<PathBuf>,
    /// `http.relativeurls: true`: `Location` headers become relative.
    /// Off by default, as in a stock deployment: the registry then builds
    /// absolute `Location` URLs from the request's `Host` and
    /// `X-Forwarded-Proto` (default `http`), which a TLS front end must set.
    pub relative_urls: bool,
    /// Serve HTTPS only, with this certificate chain and key; `ca` signed
    /// it (the readiness probe trusts only `ca`, verifying `localhost`).
    pub tls: Option<RegistryTls>,
    /// A top-level `auth:` section, YAML indented by two (e.g. `token:`
    /// with `realm`, `service`, `issuer`, `rootcertbundle`); the readiness
    /// probe then takes the registry's 401 on `GET /v2/` as up.
    pub auth: Option<String>,
}

/// PEM files of [`RegistryOpts::tls`] (made by `support::tls::Tls`).
#[derive(Debug, Clone)]
pub struct RegistryTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

impl RegistryTls {
    /// The files of a `support::tls::Tls`.
    pub fn from(tls: &super::tls::Tls) -> RegistryTls {
        RegistryTls {
            cert: tls.server_cert(),
            key: tls.server_key(),
            ca: tls.ca_cert(),
        }
    }
}

pub struct Registry {
    child: Option<Child>,
    pid: u32,
    addr: SocketAddr,
    dir: TempDir,
    storage: PathBuf,
}

impl Registry {
    /// Starts a registry with fresh storage and waits until `GET /v2/` is 200.
    pub fn start() -> Registry {
        Self::start_with(RegistryOpts::default())
    }

    /// Starts a registry whose filesystem storage is `storage` (e.g. another
    /// registry's [`Registry::storage`], to have two upstreams serving the
    /// same content).
    pub fn start_with_storage(storage: &Path) -> Registry {
        Self::start_with(RegistryOpts {
            storage: Some(storage.to_owned()),
            ..RegistryOpts::default()
        })
    }

    pub fn start_with(opts: RegistryOpts) -> Registry {
        let dir = tempfile::Builder::new()
            .prefix("regproxy-registry-")
            .tempdir()
            .expect("create registry temp dir");
        let storage = opts
            .storage
            .clone()
            .unwrap_or_else(|| dir.path().join("storage"));
        std::fs::create_dir_all(&storage).expect("create registry storage");
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            config_yaml(&storage, opts.relative_urls, opts.tls.as_ref()) + &auth_yaml(&opts),
        )
        .expect("write registry config");
        let log_path = dir.path().join("registry.log");
        let access_path = dir.path().join("access.log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(File::create(&access_path).expect("create access.log"))
            .stderr(File::create(&log_path).expect("create registry.log"))
            .spawn()
            .expect("spawn docker-registry (apt-get install docker-registry)");
        let pid = child.id();
        let mut reg = Registry {
            child: Some(child),
            pid,
            // Replaced below once the log names the real port.
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            dir,
            storage,
        };
        let addr = super::wait_for(START_TIMEOUT, || {
            if let Some(status) = reg.try_exit_status() {
                panic!(
                    "docker-registry exited early ({status}):\n{}",
                    reg.log_text()
                );
            }
            parse_listening(super::complete_lines(&reg.log_text()))
        });
        reg.addr = addr.unwrap_or_else(|| {
            panic!(
                "docker-registry did not log its address:\n{}",
                reg.log_text()
            )
        });
        let probe = match &opts.tls {
            None => super::http::Endpoint::plain(reg.addr),
            Some(tls) => {
                let ca = rustls::pki_types::CertificateDer::from_pem_file(&tls.ca)
                    .unwrap_or_else(|e| panic!("{}: {e}", tls.ca.display()));
                super::http::Endpoint::tls(reg.addr, super::tls::client_config_trusting(&[ca]))
            }
        };
        let ready = super::wait_for(START_TIMEOUT, || {
            let resp = super::http::get(&probe, "/v2/", None, &[("User-Agent", PROBE_USER_AGENT)]);
            let up = if opts.auth.is_some() { 401 } else { 200 };
            matches!(resp, Ok(r) if r.status == up).then_some(())
        });
        assert!(
            ready.is_some(),
            "docker-registry at {} never answered GET /v2/ with 200:\n{}",
            reg.addr,
            reg.log_text()
        );
        reg
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The filesystem storage root (`rootdirectory`).
    pub fn storage(&self) -> &Path {
        &self.storage
    }

    /// The temporary directory holding config, logs and (by default) storage.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Number of blobs stored: files named `data` under
    /// `docker/registry/v2/blobs`. Distribution stores each manifest as a
    /// blob too, so pushing an image with N new layers adds N + 2 (layers,
    /// config, manifest); see `ImageDir::registry_blob_count`.
    pub fn blob_count(&self) -> usize {
        fn walk(dir: &Path) -> usize {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return 0;
            };
            entries
                .flatten()
                .map(|e| {
                    let path = e.path();
                    if path.is_dir() {
                        walk(&path)
                    } else {
                        usize::from(e.file_name() == "data")
                    }
                })
                .sum()
        }
        walk(&self.storage.join("docker/registry/v2/blobs"))
    }

    /// Whether the blob `sha256:<hex>` (or bare hex) is stored.
    pub fn has_blob(&self, digest: &str) -> bool {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.storage
            .join("docker/registry/v2/blobs/sha256")
            .join(hex.get(..2).unwrap_or(hex))
            .join(hex)
            .join("data")
            .is_file()
    }

    /// `layers[].digest` of `repo:tag`, read from the storage directory.
    pub fn manifest_layers(&self, repo: &str, tag: &str) -> Vec<String> {
        let root = self.storage.join("docker/registry/v2");
        let link = root.join(format!(
            "repositories/{repo}/_manifests/tags/{tag}/current/link"
        ));
        let digest =
            std::fs::read_to_string(&link).unwrap_or_else(|e| panic!("{}: {e}", link.display()));
        let hex = digest.trim().trim_start_matches("sha256:").to_owned();
        let data = root
            .join("blobs/sha256")
            .join(hex.get(..2).unwrap_or(&hex))
            .join(&hex)
            .join("data");
        let manifest =
            std::fs::read_to_string(&data).unwrap_or_else(|e| panic!("{}: {e}", data.display()));
        super::skopeo::layer_digests_of_manifest(&manifest)
    }

    /// Whether the registry links blob `digest` into `repo` (the
    /// `_layers/.../link` file an upload or a mount writes).
    pub fn repo_links_blob(&self, repo: &str, digest: &str) -> bool {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.storage
            .join("docker/registry/v2/repositories")
            .join(repo)
            .join("_layers/sha256")
            .join(hex)
            .join("link")
            .is_file()
    }

    /// Every request logged so far, harness probes left out. A request is
    /// logged when its response completes; use [`Registry::settle`] first
    /// when counting right after a transfer.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        let text = std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default();
        super::complete_lines(&text)
            .lines()
            .filter_map(parse_access_line)
            .filter(|r| r.user_agent != PROBE_USER_AGENT)
            .collect()
    }

    /// Number of HTTP requests that reached the registry (probes left out).
    pub fn request_count(&self) -> usize {
        self.requests().len()
    }

    /// Waits until the access log has not grown for `quiet` (at most 10 s),
    /// then returns [`Registry::request_count`].
    pub fn settle(&self, quiet: Duration) -> usize {
        let path = self.dir.path().join("access.log");
        let len = || std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut last = len();
        loop {
            // The condition is "no growth for `quiet`": this sleep is the
            // observation window, polled until the log holds still.
            std::thread::sleep(quiet);
            let now = len();
            if now == last || std::time::Instant::now() >= deadline {
                break;
            }
            last = now;
        }
        self.request_count()
    }

    /// The registry's application log (stderr).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// The raw access log (stdout).
    pub fn access_log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }

    fn try_exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Kills the registry now (SIGKILL to its PID) and reaps it; the port
    /// then refuses connections. Idempotent; also done on drop.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

fn config_yaml(storage: &Path, relative_urls: bool, tls: Option<&RegistryTls>) -> String {
    let tls = tls.map_or(String::new(), |t| {
        format!(
            "  tls:\n    certificate: \"{}\"\n    key: \"{}\"\n",
            t.cert.display(),
            t.key.display()
        )
    });
    format!(
        r#"version: 0.1
log:
  level: info
  formatter: text
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: "{root}"
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:0
  secret: regproxy-e2e-fixed-secret
  relativeurls: {relative_urls}
{tls}health:
  storagedriver:
    enabled: false
"#,
        root = storage.display()
    )
}

fn auth_yaml(opts: &RegistryOpts) -> String {
    opts.auth
        .as_ref()
        .map_or(String::new(), |a| format!("auth:\n{a}\n"))
}

/// `... msg="listening on 127.0.0.1:NNNNN" ...` (with TLS `listening on
/// 127.0.0.1:NNNNN, tls`) → the address.
fn parse_listening(log: &str) -> Option<SocketAddr> {
    log.lines().find_map(|line| {
        let rest = &line[line.find("listening on ")? + "listening on ".len()..];
        let end = rest
            .find(|c: char| c == '"' || c == ',' || c.is_whitespace())
            .unwrap_or(rest.len());
        rest[..end].parse().ok()
    })
}

/// `127.0.0.1 - - [date] "GET /v2/ HTTP/1.1" 200 2 "referer" "agent"`.
fn parse_access_line(line: &str) -> Option<LoggedRequest> {
    let mut quoted = line.split('"');
    quoted.next()?; // client, ident, user, date
    let request_line = quoted.next()?;
    let status_part = quoted.next()?;
    quoted.next()?; // referer
    quoted.next()?; // separator
    let user_agent = quoted.next().unwrap_or_default().to_owned();
    let mut rl = request_line.split(' ');
    let method = rl.next()?.to_owned();
    let uri = rl.next()?.to_owned();
    let status = status_part.split_whitespace().next()?.parse().ok()?;
    Some(LoggedRequest {
        method,
        uri,
        status,
        user_agent,
    })
}
