//! What may change while serving: the users, the access policy and the TLS
//! certificate. They are loaded and validated whole, then published to every
//! worker at once; a reload that fails validation keeps the running set and
//! logs exactly what is wrong. Connections in flight keep the snapshot they
//! started with, so nothing is dropped.
//!
//! Reloads come from SIGHUP and from polling the files' mtimes.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::{anyhow, Context};

use crate::auth::acl::Acl;
use crate::auth::bearer::{Fetchers, OidcIssuers, TokenService};
use crate::auth::groups::Groups;
use crate::auth::htpasswd::Htpasswd;
use crate::auth::jwks::{self, JwksHandle};
use crate::auth::LineError;
use crate::config::Config;
use crate::reload::Published;
use crate::tls;

/// The authentication and authorization data a request is decided with.
#[derive(Debug, Clone)]
pub struct AuthState {
    pub users: Htpasswd,
    pub groups: Groups,
    pub acl: Acl,
    /// `[auth.token]`: the keys tokens are signed and checked with.
    pub tokens: Option<Arc<TokenService>>,
    /// `[[auth.oidc]]`: the CI issuers whose identity tokens are taken.
    pub oidc: Arc<OidcIssuers>,
    /// Which load this is: verified tokens are kept only for the keys
    /// they were checked against (`auth::bearer`).
    pub epoch: u64,
}

/// Counts loads, for [`AuthState::epoch`].
static EPOCH: AtomicU64 = AtomicU64::new(0);

/// The TLS server configuration, or `None` for plain HTTP.
pub type TlsState = Option<Arc<rustls::ServerConfig>>;

/// Everything loaded from disk for one configuration.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub auth: AuthState,
    pub tls: TlsState,
    /// The https JWKS fetchers (not started: `server` starts them).
    pub fetchers: Fetchers,
}

/// Reads and validates `path` and every file it names. Makes a fetcher
/// for each https JWKS, without fetching anything.
pub fn load(path: &Path) -> anyhow::Result<Loaded> {
    load_with(path, None)
}

/// A fetcher for each https JWKS the config names.
fn new_fetchers(config: &Config) -> anyhow::Result<Fetchers> {
    let mut fetchers = Fetchers::new();
    for o in &config.auth.oidc {
        if let crate::config::JwksSource::Url(url) = &o.jwks {
            jwks::check_url(url).map_err(|why| {
                anyhow!("[[auth.oidc]] issuer {}: jwks {url}: {why}", o.provider.issuer)
            })?;
            let tls = jwks::client_config(o.ca_file.as_deref())
                .with_context(|| format!("[[auth.oidc]] issuer {}", o.provider.issuer))?;
            fetchers.insert(url.clone(), JwksHandle::new(&o.provider.issuer, url, tls));
        }
    }
    Ok(fetchers)
}

/// [`load`], reusing the running fetchers on a reload.
fn load_with(path: &Path, running: Option<&Fetchers>) -> anyhow::Result<Loaded> {
    let config = crate::config::load(path)?;
    let fetchers = match running {
        Some(f) => f.clone(),
        None => new_fetchers(&config)?,
    };
    // The unknown-user stand-in is recomputed with every load, so it keeps
    // the cost of the file as it is now.
    let users = load_htpasswd(&config.auth.htpasswd)?.with_unknown_user_dummy();
    let tls = match &config.tls {
        Some(files) => Some(tls::server_config(files)?),
        None => None,
    };
    let mut groups = match &config.auth.groups_file {
        Some(file) => load_groups(file)?,
        None => Groups::default(),
    };
    groups
        .merge(&config.groups)
        .map_err(|errors| anyhow!("{}: [groups]: {}", config.path.display(), errors.join("; ")))?;
    let acl = match &config.access {
        Some(rules) => Acl::new(rules.clone()),
        None => Acl::from_push_users(config.auth.push_users.clone()),
    };
    // A rule naming a group nobody defined would silently match no one.
    let undefined = acl.undefined_groups(&groups);
    if !undefined.is_empty() {
        return Err(anyhow!(
            "{}: [[access]] names undefined groups: {}",
            config.path.display(),
            undefined.join(", ")
        ));
    }
    let tokens = match &config.auth.token {
        Some(t) => Some(Arc::new(TokenService::load(t)?)),
        None => None,
    };
    let oidc = Arc::new(OidcIssuers::load(&config.auth.oidc, &fetchers)?);
    Ok(Loaded {
        config,
        auth: AuthState {
            users,
            groups,
            acl,
            tokens,
            oidc,
            epoch: EPOCH.fetch_add(1, Ordering::Relaxed),
        },
        tls,
        fetchers,
    })
}

/// Parses an htpasswd file, reporting every bad line as `FILE:LINE: why`.
pub fn load_htpasswd(path: &Path) -> anyhow::Result<Htpasswd> {
    load_lines(path, "htpasswd", Htpasswd::parse)
}

/// Parses an htgroup file, reporting every bad line as `FILE:LINE: why`.
pub fn load_groups(path: &Path) -> anyhow::Result<Groups> {
    load_lines(path, "groups", Groups::parse)
}

fn load_lines<T>(
    path: &Path,
    kind: &str,
    parse: impl FnOnce(&str) -> Result<T, Vec<LineError>>,
) -> anyhow::Result<T> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {kind} file {}", path.display()))?;
    parse(&text).map_err(|errors| {
        let lines: Vec<String> = errors
            .iter()
            .map(|e| format!("{}:{}: {}", path.display(), e.line, e.reason))
            .collect();
        anyhow!("{}", lines.join("\n"))
    })
}

/// Publishes reloads to the workers.
#[derive(Debug)]
pub struct Reloader {
    path: PathBuf,
    /// The configuration that is live; settings that need a restart are
    /// compared against it.
    running: Mutex<Config>,
    /// Made at start, kept across reloads.
    fetchers: Fetchers,
    pub auth: Arc<Published<AuthState>>,
    pub tls: Arc<Published<TlsState>>,
}

impl Reloader {
    pub fn new(path: &Path, loaded: Loaded) -> Reloader {
        Reloader {
            path: path.to_owned(),
            running: Mutex::new(loaded.config),
            fetchers: loaded.fetchers,
            auth: Arc::new(Published::new(loaded.auth)),
            tls: Arc::new(Published::new(loaded.tls)),
        }
    }

    /// The files whose change triggers a reload.
    pub fn watched_files(&self) -> Vec<PathBuf> {
        let running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        let mut files = vec![self.path.clone(), running.auth.htpasswd.clone()];
        files.extend(running.auth.groups_file.clone());
        if let Some(t) = &running.auth.token {
            files.push(t.signing_key.clone());
            files.extend(t.verify_keys.iter().cloned());
        }
        for o in &running.auth.oidc {
            if let crate::config::JwksSource::File(f) = &o.jwks {
                files.push(f.clone());
            }
        }
        if let Some(t) = &running.tls {
            files.push(t.cert.clone());
            files.push(t.key.clone());
        }
        files
    }

    /// Loads everything again and publishes it, or keeps the running set.
    /// Serialised: a SIGHUP and a file change arriving together reload once
    /// each, one after the other.
    pub fn reload(&self, why: &str) {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        match load_with(&self.path, Some(&self.fetchers)) {
            Ok(loaded) => {
                for what in restart_only_changes(&running, &loaded.config) {
                    tracing::warn!(
                        setting = what,
                        "changed in the config file but takes effect only after a restart"
                    );
                }
                let users = loaded.auth.users.len();
                let tls = if loaded.tls.is_some() { "on" } else { "off" };
                self.auth.publish(loaded.auth);
                // Switching TLS on or off needs new listeners; a new
                // certificate or key for the same mode is published.
                if running.tls.is_some() == loaded.config.tls.is_some() {
                    self.tls.publish(loaded.tls);
                }
                *running = loaded.config;
                tracing::info!(trigger = why, users, tls = %tls, "configuration reloaded");
            }
            Err(e) => tracing::error!(
                trigger = why,
                "reload failed, keeping the running configuration: {e:#}"
            ),
        }
    }
}

/// Settings bound at start-up (sockets, threads, pools) that a reload
/// cannot change.
fn restart_only_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    if old.listen != new.listen {
        changed.push("listen");
    }
    if old.workers != new.workers {
        changed.push("workers");
    }
    if old.driver != new.driver {
        changed.push("driver");
    }
    if old.tls.is_some() != new.tls.is_some() {
        changed.push("tls (on/off)");
    }
    if old.upstream.servers != new.upstream.servers {
        changed.push("upstream.servers");
    }
    if old.upstream.tls != new.upstream.tls {
        changed.push("upstream.tls/ca_file/server_name");
    }
    if old.auth.cache_ttl != new.auth.cache_ttl
        || old.auth.hash_threads != new.auth.hash_threads
        || old.auth.hash_queue != new.auth.hash_queue
        || old.auth.max_failures != new.auth.max_failures
        || old.auth.failure_window != new.auth.failure_window
    {
        changed.push("auth.cache_ttl/hash_threads/hash_queue/max_failures/failure_window");
    }
    if old.admin_listen != new.admin_listen || old.top_repositories != new.top_repositories {
        changed.push("admin.listen/top_repositories");
    }
    if old.auth.realm != new.auth.realm {
        changed.push("auth.realm");
    }
    if old.auth.scheme != new.auth.scheme {
        changed.push("auth.scheme");
    }
    if format!(
        "{:?}{:?}{:?}{:?}",
        old.forwarding, old.client, old.access_log, old.access_log_format
    ) != format!(
        "{:?}{:?}{:?}{:?}",
        new.forwarding, new.client, new.access_log, new.access_log_format
    ) {
        changed.push("forwarding/client/log");
    }
    if old.cache != new.cache {
        changed.push("cache");
    }
    changed
}
