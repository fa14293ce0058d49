//! The registry protocol as regbench drives it (OCI distribution spec):
//! ping, HEAD checks, pulls with digest verification, and the blob upload
//! session (POST, then a chunked PATCH and `PUT ?digest=`, or one monolithic
//! `PUT ?digest=` with Content-Length), then the manifest PUT.
//!
//! [`Ctx`] is one thread's client: its connection pool, its statistics, and
//! `send`, which times every request and files every failure under the
//! request's kind.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use regproxy_core::http::head::Method;

use crate::bearer::{self, Realm, TokenCache};
use crate::client::{excerpt, Body, Failure, Pool, Request, Response, Settings, Sink};
use crate::content::{digest_of, digest_of_generated, is_sha256_digest, Generated};
use crate::stats::{Live, Stats};

pub const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// Layers are random bytes, so they are declared uncompressed.
pub const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";
/// What a pull accepts: OCI first, Docker schema 2 for older registries.
const ACCEPT_MANIFESTS: &str =
    "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";
const OCTET_STREAM: &str = "application/octet-stream";

/// Request kinds, the rows of the latency table.
pub mod kind {
    pub const PING: &str = "ping";
    pub const MANIFEST_GET: &str = "manifest GET";
    pub const MANIFEST_HEAD: &str = "manifest HEAD";
    pub const MANIFEST_PUT: &str = "manifest PUT";
    pub const BLOB_GET: &str = "blob GET";
    pub const BLOB_HEAD: &str = "blob HEAD";
    pub const UPLOAD_POST: &str = "upload POST";
    pub const UPLOAD_PATCH: &str = "upload PATCH";
    pub const UPLOAD_PUT: &str = "upload PUT";
    pub const TOKEN_GET: &str = "token GET";
}

/// An OCI content descriptor.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

/// The fields of an image manifest regbench reads and writes.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Manifest {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(
        rename = "mediaType",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    media_type: String,
    config: Descriptor,
    layers: Vec<Descriptor>,
}

/// An image as the registry has it.
#[derive(Debug, Clone)]
pub struct Image {
    pub repo: String,
    pub reference: String,
    pub manifest_digest: String,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

impl Image {
    /// Config first, then layers.
    pub fn blobs(&self) -> impl Iterator<Item = &Descriptor> {
        std::iter::once(&self.config).chain(&self.layers)
    }
}

/// One thread's registry client.
pub struct Ctx {
    pub pool: Rc<Pool>,
    pub stats: RefCell<Stats>,
    pub live: Arc<Live>,
    pub settings: Settings,
    /// Verify pulled digests (off with `--no-verify`).
    pub verify: bool,
    /// Upload blobs with one `PUT ?digest=` instead of PATCH then PUT.
    pub monolithic: bool,
    /// This client's Bearer tokens (`--token-auth`).
    pub tokens: RefCell<TokenCache>,
}

/// A check on a response with the expected status: content verification.
type Check<'a> = &'a dyn Fn(&Response) -> Result<(), Failure>;

impl Ctx {
    /// Sends `req` with the run's credentials and files the outcome under
    /// `kind`: latency and bytes when the status is one of `expect` (and
    /// `check` passes), a failure otherwise. With Bearer tokens, a 401 on
    /// a request that carried one drops that token, and the request goes
    /// once more with a fresh one, as docker does.
    pub async fn send(
        &self,
        kind: &'static str,
        req: Request,
        sink: Sink,
        expect: &[u16],
        check: Check<'_>,
    ) -> Result<Response, Failure> {
        let Some(realm) = self.settings.bearer.clone() else {
            let basic = self.settings.authorization.as_deref();
            let outcome = self.exchange(&req, sink, basic).await;
            return self.file(kind, &req, outcome, expect, check);
        };
        let key = repository_of(&req);
        let auth = self.bearer_for(&realm, &key).await?;
        let mut outcome = self.exchange(&req, sink, Some(&auth)).await;
        let refused = match &outcome {
            Ok((resp, _)) => resp.status() == 401,
            Err(f) => f.kind == "status 401",
        };
        if refused {
            self.tokens.borrow_mut().forget(&key);
            let auth = self.bearer_for(&realm, &key).await?;
            outcome = self.exchange(&req, sink, Some(&auth)).await;
        }
        self.file(kind, &req, outcome, expect, check)
    }

    /// `send` with the given `Authorization` value, never a token.
    async fn send_as(
        &self,
        kind: &'static str,
        req: &Request,
        sink: Sink,
        expect: &[u16],
        check: Check<'_>,
        authorization: Option<&str>,
    ) -> Result<Response, Failure> {
        let outcome = self.exchange(req, sink, authorization).await;
        self.file(kind, req, outcome, expect, check)
    }

    /// Checks an exchange's outcome and records it under `kind`.
    fn file(
        &self,
        kind: &'static str,
        req: &Request,
        outcome: Result<(Response, Duration), Failure>,
        expect: &[u16],
        check: Check<'_>,
    ) -> Result<Response, Failure> {
        let outcome = outcome.and_then(|(resp, took)| {
            if !expect.contains(&resp.status()) {
                return Err(status_failure(req, &resp));
            }
            check(&resp)?;
            Ok((resp, took))
        });
        let mut stats = self.stats.borrow_mut();
        match outcome {
            Ok((resp, took)) => {
                stats.request_ok(kind, took, resp.sent, resp.received);
                Live::add(&self.live.requests, 1);
                Live::add(&self.live.bytes, resp.sent + resp.received);
                Ok(resp)
            }
            Err(f) => {
                stats.request_failed(kind, &f);
                Live::add(&self.live.errors, 1);
                Err(f)
            }
        }
    }

    /// One request on a leased connection; a reused connection that turns
    /// out closed (the server dropped it while idle) is retried once on a
    /// fresh one. Returns the response and its latency (connecting excluded).
    async fn exchange(
        &self,
        req: &Request,
        sink: Sink,
        authorization: Option<&str>,
    ) -> Result<(Response, Duration), Failure> {
        let mut lease = self.pool.lease().await;
        let host = &self.pool.connector.target.authority;
        let mut retried = false;
        loop {
            let mut conn = match lease.take_idle() {
                Some(c) => c,
                None => self.connect().await?,
            };
            let stale_possible = !conn.is_fresh() && !retried;
            let start = Instant::now();
            match conn
                .exchange(req, sink, host, authorization, &self.settings)
                .await
            {
                Ok(resp) => {
                    let took = start.elapsed();
                    lease.put(conn);
                    return Ok((resp, took));
                }
                Err(f) if stale_possible && matches!(f.kind.as_str(), "closed" | "reset") => {
                    retried = true;
                }
                Err(f) => return Err(f),
            }
        }
    }

    /// The `Authorization` value for requests under `key`: the token this
    /// client holds, or a new one from the realm.
    async fn bearer_for(&self, realm: &Realm, key: &Option<String>) -> Result<String, Failure> {
        let held = self
            .tokens
            .borrow()
            .get(key, Instant::now())
            .map(str::to_owned);
        if let Some(header) = held {
            return Ok(header);
        }
        let scope = key.as_deref().map(bearer::scope_for);
        let fetched = Instant::now();
        let answer = self.fetch_token(realm, scope.as_deref()).await?;
        Ok(self.tokens.borrow_mut().put(key.clone(), &answer, fetched))
    }

    /// `GET <realm>?service=…[&scope=…]` with the Basic credentials (or
    /// none), filed as a `token GET`.
    pub async fn fetch_token(
        &self,
        realm: &Realm,
        scope: Option<&str>,
    ) -> Result<bearer::Answer, Failure> {
        let req = Request::new(Method::Get, realm.token_path(scope));
        let check = |r: &Response| bearer::parse_answer(&r.body).map(drop);
        let resp = self
            .send_as(
                kind::TOKEN_GET,
                &req,
                Sink::Keep,
                &[200],
                &check,
                realm.basic.as_deref(),
            )
            .await?;
        bearer::parse_answer(&resp.body)
    }

    /// `GET /v2/` without credentials must answer 401 with a Bearer
    /// challenge: its realm and service, for `--token-auth` and the
    /// `token` scenario.
    pub async fn discover_realm(&self) -> Result<Realm, Failure> {
        let req = Request::new(Method::Get, "/v2/");
        let (resp, _) = self.exchange(&req, Sink::Discard, None).await?;
        let found = (resp.status() == 401)
            .then(|| resp.header_str("WWW-Authenticate"))
            .flatten()
            .and_then(bearer::parse_challenge)
            .and_then(|(realm, service)| Some((bearer::realm_path(&realm)?, service)));
        let (path, service) = found.ok_or_else(|| {
            Failure::new(
                "challenge",
                format!(
                    "GET /v2/ without credentials answered {} {}, not 401 with a Bearer \
                     challenge (is the target set up for Bearer tokens?)",
                    resp.status(),
                    resp.head.reason()
                ),
            )
        })?;
        Ok(Realm {
            path,
            service,
            basic: self.settings.authorization.clone(),
        })
    }

    async fn connect(&self) -> Result<crate::client::Conn, Failure> {
        let start = Instant::now();
        let result = self.pool.connector.connect().await;
        let mut stats = self.stats.borrow_mut();
        match &result {
            Ok(_) => stats.connects.record(start.elapsed(), 0, 0),
            Err(f) => {
                stats.connects.errors += 1;
                stats.file_error("connect", f);
                Live::add(&self.live.errors, 1);
            }
        }
        result
    }

    pub async fn ping(&self) -> Result<(), Failure> {
        let req = Request::new(Method::Get, "/v2/");
        self.send(kind::PING, req, Sink::Discard, &[200], &|_| Ok(()))
            .await
            .map(drop)
    }

    pub async fn head_manifest(&self, repo: &str, reference: &str) -> Result<(), Failure> {
        let req = Request::new(Method::Head, format!("/v2/{repo}/manifests/{reference}"))
            .header("Accept", ACCEPT_MANIFESTS);
        self.send(kind::MANIFEST_HEAD, req, Sink::Discard, &[200], &|_| Ok(()))
            .await
            .map(drop)
    }

    /// HEAD on a blob; `expect` lists the acceptable answers (200 for "must
    /// exist", 200 and 404 for "does it exist?"). Returns the status.
    pub async fn head_blob(
        &self,
        repo: &str,
        digest: &str,
        expect: &[u16],
    ) -> Result<u16, Failure> {
        let req = Request::new(Method::Head, format!("/v2/{repo}/blobs/{digest}"));
        self.send(kind::BLOB_HEAD, req, Sink::Discard, expect, &|_| Ok(()))
            .await
            .map(|r| r.status())
    }

    /// GET a manifest by tag or digest, checked against the digest the
    /// registry names (and the one asked for).
    pub async fn get_manifest(&self, repo: &str, reference: &str) -> Result<Image, Failure> {
        let req = Request::new(Method::Get, format!("/v2/{repo}/manifests/{reference}"))
            .header("Accept", ACCEPT_MANIFESTS);
        let verify = self.verify;
        let check = |resp: &Response| {
            let got = resp.digest.as_deref().unwrap_or_default();
            let named = resp.header_str("Docker-Content-Digest");
            let wanted = if is_sha256_digest(reference) {
                Some(reference)
            } else {
                named
            };
            match wanted {
                Some(w) if verify && w != got => Err(Failure::new(
                    "digest",
                    format!("manifest {repo}:{reference}: expected {w}, content hashes to {got}"),
                )),
                _ => parse_manifest(&resp.body)
                    .map(drop)
                    .map_err(|why| Failure::new("manifest", format!("{repo}:{reference}: {why}"))),
            }
        };
        let resp = self
            .send(kind::MANIFEST_GET, req, Sink::Keep, &[200], &check)
            .await?;
        let manifest = parse_manifest(&resp.body)
            .map_err(|why| Failure::new("manifest", format!("{repo}:{reference}: {why}")))?;
        Ok(Image {
            repo: repo.to_owned(),
            reference: reference.to_owned(),
            manifest_digest: resp.digest.unwrap_or_default(),
            config: manifest.config,
            layers: manifest.layers,
        })
    }

    /// GET a blob; its size, and its digest unless `--no-verify`, must match.
    pub async fn get_blob(&self, repo: &str, blob: &Descriptor) -> Result<(), Failure> {
        let req = Request::new(Method::Get, format!("/v2/{repo}/blobs/{}", blob.digest));
        let sink = if self.verify {
            Sink::Hash
        } else {
            Sink::Discard
        };
        let check = |resp: &Response| {
            if resp.received != blob.size {
                return Err(Failure::new(
                    "size",
                    format!(
                        "blob {} of {repo}: {} bytes, the manifest says {}",
                        blob.digest, resp.received, blob.size
                    ),
                ));
            }
            match resp.digest.as_deref() {
                Some(got) if got != blob.digest => Err(Failure::new(
                    "digest",
                    format!("blob {} of {repo}: content hashes to {got}", blob.digest),
                )),
                _ => Ok(()),
            }
        };
        self.send(kind::BLOB_GET, req, sink, &[200], &check)
            .await
            .map(drop)
    }

    /// A whole pull: the manifest, then every blob in order.
    pub async fn pull(&self, repo: &str, reference: &str) -> Result<Image, Failure> {
        let image = self.get_manifest(repo, reference).await?;
        for blob in image.blobs() {
            self.get_blob(repo, blob).await?;
        }
        Ok(image)
    }

    /// Starts an upload session; returns the path to continue it at.
    async fn start_upload(&self, repo: &str) -> Result<String, Failure> {
        let req = Request::new(Method::Post, format!("/v2/{repo}/blobs/uploads/"));
        let resp = self
            .send(kind::UPLOAD_POST, req, Sink::Discard, &[202], &|r| {
                location(r).map(drop)
            })
            .await?;
        location(&resp)
    }

    /// Uploads `size` generated bytes from `seed` as one blob.
    pub async fn push_blob(&self, repo: &str, seed: u64, size: u64) -> Result<Descriptor, Failure> {
        let at = self.start_upload(repo).await?;
        let gen = Generated::new(seed, size);
        let digest = if self.monolithic {
            // The digest goes in the URL before the body: hash the bytes
            // once without keeping them, then generate them again to send.
            let digest = digest_of_generated(seed, size, &mut Vec::new());
            let req = Request::new(Method::Put, with_digest(&at, &digest))
                .header("Content-Type", OCTET_STREAM)
                .body(Body::Generated {
                    gen,
                    chunked: false,
                    hash: false,
                });
            self.finish_upload(req, &digest).await?;
            digest
        } else {
            let req = Request::new(Method::Patch, at)
                .header("Content-Type", OCTET_STREAM)
                .body(Body::Generated {
                    gen,
                    chunked: true,
                    hash: true,
                });
            let resp = self
                .send(kind::UPLOAD_PATCH, req, Sink::Discard, &[202], &|r| {
                    location(r).map(drop)
                })
                .await?;
            let digest = resp.sent_digest.clone().unwrap_or_default();
            let req = Request::new(Method::Put, with_digest(&location(&resp)?, &digest));
            self.finish_upload(req, &digest).await?;
            digest
        };
        Ok(Descriptor {
            media_type: LAYER_TYPE.to_owned(),
            digest,
            size,
        })
    }

    /// Uploads a small blob held in memory (an image config).
    pub async fn push_bytes(
        &self,
        repo: &str,
        data: Bytes,
        media_type: &str,
    ) -> Result<Descriptor, Failure> {
        let at = self.start_upload(repo).await?;
        let digest = digest_of(&data);
        let size = data.len() as u64;
        let req = Request::new(Method::Put, with_digest(&at, &digest))
            .header("Content-Type", OCTET_STREAM)
            .body(Body::Bytes(data));
        self.finish_upload(req, &digest).await?;
        Ok(Descriptor {
            media_type: media_type.to_owned(),
            digest,
            size,
        })
    }

    /// The closing `PUT ?digest=`: 201, and the registry must agree on the
    /// digest.
    async fn finish_upload(&self, req: Request, digest: &str) -> Result<(), Failure> {
        let check = |r: &Response| match r.header_str("Docker-Content-Digest") {
            Some(named) if named != digest => Err(Failure::new(
                "digest",
                format!("upload of {digest}: the registry stored {named}"),
            )),
            _ => Ok(()),
        };
        self.send(kind::UPLOAD_PUT, req, Sink::Discard, &[201], &check)
            .await
            .map(drop)
    }

    /// Puts an OCI image manifest under `tag`; returns its digest.
    pub async fn push_manifest(
        &self,
        repo: &str,
        tag: &str,
        config: &Descriptor,
        layers: &[Descriptor],
    ) -> Result<String, Failure> {
        let body = manifest_json(config, layers);
        let digest = digest_of(&body);
        let req = Request::new(Method::Put, format!("/v2/{repo}/manifests/{tag}"))
            .header("Content-Type", MANIFEST_TYPE)
            .body(Body::Bytes(Bytes::from(body)));
        let check = |r: &Response| match r.header_str("Docker-Content-Digest") {
            Some(named) if named != digest => Err(Failure::new(
                "digest",
                format!("manifest {repo}:{tag}: sent {digest}, the registry stored {named}"),
            )),
            _ => Ok(()),
        };
        self.send(kind::MANIFEST_PUT, req, Sink::Discard, &[201], &check)
            .await?;
        Ok(digest)
    }

    /// Pushes an image: one layer per `(seed, size)`, a config naming them,
    /// and the manifest under `tag`.
    pub async fn push_image(
        &self,
        repo: &str,
        tag: &str,
        layers: &[(u64, u64)],
    ) -> Result<Image, Failure> {
        let mut pushed = Vec::with_capacity(layers.len());
        for &(seed, size) in layers {
            pushed.push(self.push_blob(repo, seed, size).await?);
        }
        let config = config_json(&pushed, tag);
        let config = self
            .push_bytes(repo, Bytes::from(config), CONFIG_TYPE)
            .await?;
        let manifest_digest = self.push_manifest(repo, tag, &config, &pushed).await?;
        Ok(Image {
            repo: repo.to_owned(),
            reference: tag.to_owned(),
            manifest_digest,
            config,
            layers: pushed,
        })
    }
}

/// The repository a request is for, by regproxy's own route grammar
/// (`None` for `/v2/` and anything else): the key of a client's token.
fn repository_of(req: &Request) -> Option<String> {
    let (path, query) = match req.path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (req.path.as_str(), None),
    };
    regproxy_core::route::classify(req.method.as_str(), path, query, None)
        .ok()?
        .repository()
        .map(str::to_owned)
}

fn status_failure(req: &Request, resp: &Response) -> Failure {
    let body = excerpt(&resp.body);
    Failure::new(
        format!("status {}", resp.status()),
        format!(
            "{} {} answered {} {}{}{}",
            req.method.as_str(),
            req.path,
            resp.status(),
            resp.head.reason(),
            if body.is_empty() { "" } else { ": " },
            body
        ),
    )
}

/// The path of a `Location` answer. The registry sends absolute URLs built
/// from `Host` and `X-Forwarded-Proto`; the path is all regbench needs, as it
/// keeps talking to the target it was given.
pub fn location(resp: &Response) -> Result<String, Failure> {
    let value = resp.header_str("Location").ok_or_else(|| {
        Failure::new(
            "protocol",
            format!("{} answer without Location", resp.status()),
        )
    })?;
    location_path(value)
        .ok_or_else(|| Failure::new("protocol", format!("unusable Location {value:?}")))
}

fn location_path(value: &str) -> Option<String> {
    let path = if value.starts_with('/') {
        value
    } else {
        let rest = value
            .strip_prefix("http://")
            .or_else(|| value.strip_prefix("https://"))?;
        &rest[rest.find('/')?..]
    };
    path.bytes()
        .all(|b| b.is_ascii_graphic())
        .then(|| path.to_owned())
}

/// Adds `digest=` to an upload URL that may already carry a query (the
/// registry's `_state`).
fn with_digest(at: &str, digest: &str) -> String {
    let sep = if at.contains('?') { '&' } else { '?' };
    format!("{at}{sep}digest={digest}")
}

/// An image manifest whose blobs all have canonical sha256 digests.
fn parse_manifest(body: &[u8]) -> Result<Manifest, String> {
    let manifest: Manifest =
        serde_json::from_slice(body).map_err(|e| format!("not an image manifest: {e}"))?;
    for d in std::iter::once(&manifest.config).chain(&manifest.layers) {
        if !is_sha256_digest(&d.digest) {
            return Err(format!("names blob {:?}", d.digest));
        }
    }
    Ok(manifest)
}

/// A manifest's body and its digest, as the origin serves it.
pub fn manifest_digest_and_body(config: &Descriptor, layers: &[Descriptor]) -> (String, Vec<u8>) {
    let body = manifest_json(config, layers);
    (digest_of(&body), body)
}

fn manifest_json(config: &Descriptor, layers: &[Descriptor]) -> Vec<u8> {
    let manifest = Manifest {
        schema_version: 2,
        media_type: MANIFEST_TYPE.to_owned(),
        config: config.clone(),
        layers: layers.to_vec(),
    };
    // Serializing plain strings and numbers cannot fail.
    serde_json::to_vec(&manifest).unwrap_or_default()
}

/// A minimal image config: the registry stores it as an opaque blob, but
/// clients that inspect it find the fields they expect.
pub fn config_json(layers: &[Descriptor], tag: &str) -> Vec<u8> {
    let diff_ids: Vec<&str> = layers.iter().map(|d| d.digest.as_str()).collect();
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": { "Labels": { "regbench.tag": tag } },
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    });
    serde_json::to_vec(&config).unwrap_or_default()
}

/// Parses `name:tag` or `name@sha256:...` (`--image`).
pub fn parse_image_ref(text: &str) -> Result<(String, String), String> {
    let (repo, reference) = if let Some((r, d)) = text.split_once('@') {
        (r, d)
    } else {
        let slash = text.rfind('/').map_or(0, |i| i + 1);
        match text[slash..].rfind(':') {
            Some(i) => (&text[..slash + i], &text[slash + i + 1..]),
            None => (text, "latest"),
        }
    };
    if repo.is_empty() || reference.is_empty() || !valid_repo(repo) {
        return Err(format!(
            "invalid image reference {text:?} (want name:tag or name@digest)"
        ));
    }
    Ok((repo.to_owned(), reference.to_owned()))
}

/// Repository names as the distribution spec allows them: lowercase
/// alphanumerics separated by `.`, `_`, `__`, `-` runs, and `/`.
pub fn valid_repo(name: &str) -> bool {
    !name.is_empty()
        && name.split('/').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
                && part
                    .bytes()
                    .next()
                    .is_some_and(|b| b.is_ascii_alphanumeric())
                && part
                    .bytes()
                    .last()
                    .is_some_and(|b| b.is_ascii_alphanumeric())
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        for (value, want) in [
            (
                "/v2/a/blobs/uploads/u?_state=x",
                Some("/v2/a/blobs/uploads/u?_state=x"),
            ),
            (
                "http://127.0.0.1:5000/v2/a/blobs/uploads/u",
                Some("/v2/a/blobs/uploads/u"),
            ),
            ("https://h/v2/a?x=1", Some("/v2/a?x=1")),
            ("https://h", None),
            ("ftp://h/v2/", None),
            ("v2/relative", None),
            ("/v2/a b", None),
        ] {
            assert_eq!(location_path(value).as_deref(), want, "{value}");
        }
        assert_eq!(with_digest("/u", "sha256:ab"), "/u?digest=sha256:ab");
        assert_eq!(
            with_digest("/u?_state=s", "sha256:ab"),
            "/u?_state=s&digest=sha256:ab"
        );
    }

    #[test]
    fn manifests_round_trip() {
        let config = Descriptor {
            media_type: CONFIG_TYPE.into(),
            digest: digest_of(b"c"),
            size: 1,
        };
        let layer = Descriptor {
            media_type: LAYER_TYPE.into(),
            digest: digest_of(b"l"),
            size: 9,
        };
        let json = manifest_json(&config, std::slice::from_ref(&layer));
        let back: Manifest = serde_json::from_slice(&json).unwrap();
        assert_eq!(back.config, config);
        assert_eq!(back.layers, vec![layer.clone()]);
        assert_eq!(back.media_type, MANIFEST_TYPE);
        let text = String::from_utf8(json).unwrap();
        assert!(text.contains("\"schemaVersion\":2"), "{text}");
        // Docker schema 2 manifests parse as well (extra fields ignored).
        let docker = r#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",
            "config":{"mediaType":"x","size":7,"digest":"sha256:00"},"layers":[],"annotations":{}}"#;
        assert!(serde_json::from_str::<Manifest>(docker).is_ok());
        let cfg: serde_json::Value = serde_json::from_slice(&config_json(&[layer], "t1")).unwrap();
        assert_eq!(cfg["rootfs"]["diff_ids"][0], digest_of(b"l"));
    }

    #[test]
    fn tokens_are_kept_per_repository() {
        let of = |m, p: &str| repository_of(&Request::new(m, p));
        assert_eq!(of(Method::Get, "/v2/"), None);
        assert_eq!(
            of(Method::Head, "/v2/team/app/manifests/t1").as_deref(),
            Some("team/app")
        );
        let d = digest_of(b"x");
        assert_eq!(
            of(
                Method::Put,
                &format!("/v2/a/blobs/uploads/u1?_state=s&digest={d}")
            )
            .as_deref(),
            Some("a")
        );
        assert_eq!(
            of(Method::Post, "/v2/a/b/blobs/uploads/").as_deref(),
            Some("a/b")
        );
        assert_eq!(of(Method::Get, "/token?service=s"), None);
    }

    #[test]
    fn image_refs() {
        assert_eq!(
            parse_image_ref("a/b:t").unwrap(),
            ("a/b".into(), "t".into())
        );
        assert_eq!(
            parse_image_ref("a/b").unwrap(),
            ("a/b".into(), "latest".into())
        );
        let d = digest_of(b"x");
        assert_eq!(parse_image_ref(&format!("a@{d}")).unwrap(), ("a".into(), d));
        for bad in ["", ":t", "A/b:t", "a//b:t", "a/b:", "-a:t"] {
            assert!(parse_image_ref(bad).is_err(), "{bad}");
        }
        assert!(valid_repo("regbench/push-1"));
        assert!(valid_repo("a.b_c"));
        assert!(!valid_repo("a/"));
    }
}
