//! Which repository a request touches, and how: the registry's own route
//! grammar, reproduced so that authorization sees exactly the repository
//! name the registry will act on.
//!
//! Pipeline role: after *route* (`policy::route` has already said the path
//! is under `/v2/`) and before *authorize*. [`classify`] turns method, path,
//! query and Content-Type into a [`Target`]; `auth::acl` then decides on the
//! target's [`needs`](Target::needs). A request [`classify`] refuses never
//! reaches the rules, the credential check or the registry.
//!
//! The grammar is CNCF distribution's (`registry/api/v2/descriptors.go`,
//! `reference/regexp.go`, and the dispatchers in `registry/handlers/`), as
//! in registry 2.8 and 3.x, plus the referrers route the OCI distribution
//! spec 1.1 adds (end-12a/12b), which zot, Harbor and the cloud registries
//! serve; distribution itself (2.8 to 3.1) answers it 404, so clients fall
//! back to the spec's tag schema there, which is ordinary manifests. Every
//! endpoint of the spec's table is one of these routes:
//!
//! | route | path | methods |
//! |---|---|---|
//! | base | `/v2/` | any (we accept GET, HEAD) |
//! | catalog | `/v2/_catalog` | GET |
//! | tags | `/v2/<name>/tags/list` | GET |
//! | manifest | `/v2/<name>/manifests/<tag or digest>` | GET, HEAD, PUT, DELETE |
//! | referrers | `/v2/<name>/referrers/<digest>` | GET (the spec defines no other) |
//! | blob | `/v2/<name>/blobs/<digest>` | GET, HEAD, DELETE |
//! | blob-upload | `/v2/<name>/blobs/uploads/` | GET, HEAD, POST, PATCH, PUT, DELETE |
//! | blob-upload-chunk | `/v2/<name>/blobs/uploads/<uuid>` | the same |
//!
//! `<name>` is path components `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
//! joined by `/`, at most 255 characters. Each route is told apart by its
//! last one to three segments (`tags/list`, `manifests/R`, `referrers/D`,
//! `blobs/D`, `blobs/uploads/`, `blobs/uploads/U`), which no two routes
//! share, so the name is everything before them — the same split the
//! registry's anchored route regexps make. Queries are forwarded as sent;
//! only the upload routes' is read here (tags' `n` and `last`, and
//! referrers' `artifactType`, only page or filter within the repository).
//!
//! What is refused, and why it cannot be normalised instead:
//! - Any `%` in the path (400): the registry matches routes on the *decoded*
//!   path, so `a%2fb` is repository `a/b` there. No valid registry path
//!   needs an escape, so none is accepted, rather than decoding them the
//!   way Go would.
//! - `.` and `..` segments, empty segments (`//`), controls, spaces,
//!   backslashes and non-ASCII bytes (400): the registry's router answers
//!   the first three with a redirect to a cleaned path, which would name
//!   another repository.
//! - A name outside the grammar, including upper case, or a malformed tag,
//!   digest or upload id (404: no registry route matches, and it answers
//!   404 too). The registry also accepts a first component that looks like
//!   a host name (`Example.com:5000/x`); that form is refused here, so every
//!   name let through is exactly a repository path.
//! - A name over 255 characters (400, the registry's `NAME_INVALID`).
//! - A method the route does not serve (405, as the registry). The
//!   registry also answers `OPTIONS` on any route and any method on `/v2/`;
//!   neither is needed by docker, skopeo or containerd, so both get 405.
//! - Trailing-slash variants (`…/tags/list/`, `…/blobs/uploads`) get 404;
//!   the registry would only redirect them.
//! - On the upload routes, a query whose `from` parameter the registry
//!   could read differently than we do, and on every route a form-encoded
//!   body (400): see [`classify`].

use std::fmt;

/// Longest repository name the registry accepts (`reference.NameTotalLengthMax`).
pub const MAX_NAME_LEN: usize = 255;
/// Longest tag (`[\w][\w.-]{0,127}`).
pub const MAX_TAG_LEN: usize = 128;
/// Most `&`-separated query parameters accepted on an upload request.
/// Clients send at most four (`mount`, `from`, `digest`, `_state`); the
/// bound keeps parsing cheap and stays far below any limit Go's URL parser
/// may impose, beyond which it might drop parameters we counted.
pub const MAX_QUERY_PARAMS: usize = 64;

/// What a request does, in the terms access rules are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// Read a manifest, blob, tag list or referrers list.
    Pull,
    /// Upload blobs (any upload-route request) or put a manifest.
    Push,
    /// Delete a manifest or a blob.
    Delete,
    /// List every repository (`/v2/_catalog`).
    Catalog,
}

impl Action {
    pub const ALL: [Action; 4] = [Action::Pull, Action::Push, Action::Delete, Action::Catalog];

    /// The name used in configuration and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
            Action::Catalog => "catalog",
        }
    }

    /// The inverse of [`as_str`](Self::as_str); exact, lower case.
    pub fn from_name(name: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == name)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The registry's routes under `/v2/<name>/`, by the registry's own names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepoRoute {
    Tags,
    Manifest,
    /// OCI 1.1's referrers list. No distribution release routes it yet;
    /// `referrers` is what oras's fork of distribution names the route
    /// (`RouteNameReferrers`).
    Referrers,
    Blob,
    BlobUpload,
    BlobUploadChunk,
}

impl RepoRoute {
    /// The registry's route name (`v2.RouteName*`), for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            RepoRoute::Tags => "tags",
            RepoRoute::Manifest => "manifest",
            RepoRoute::Referrers => "referrers",
            RepoRoute::Blob => "blob",
            RepoRoute::BlobUpload => "blob-upload",
            RepoRoute::BlobUploadChunk => "blob-upload-chunk",
        }
    }
}

/// A request under a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoRequest {
    pub route: RepoRoute,
    /// Exactly the name the registry will use.
    pub name: String,
    pub action: Action,
    /// Source of a cross-repository blob mount (`POST …/blobs/uploads/?
    /// mount=D&from=R`), which needs [`Action::Pull`] on it. Set whenever
    /// the registry would see a non-empty `from`, as the registry's own
    /// access check does, whether or not `mount` is there too.
    pub mount_from: Option<String>,
    /// The registry reads the request body on this route: a manifest `PUT`,
    /// an upload's `PATCH` or `PUT`, and a monolithic upload (`POST` with a
    /// non-empty `digest`). Any other body it ignores, so regproxy reads and
    /// checks it before forwarding anything (see `conn::check_ignored_body`).
    pub reads_body: bool,
}

/// What a request touches, once classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `GET`/`HEAD /v2/`: the API version check clients send first. It
    /// reads nothing; `auth::acl` decides whether it needs credentials.
    Base,
    /// `GET /v2/_catalog`.
    Catalog,
    Repository(RepoRequest),
}

impl Target {
    /// Every (repository, action) the request needs, all of which must be
    /// allowed: none for [`Target::Base`]; `(None, Catalog)` for the
    /// catalog; the repository's action, plus `Pull` on a mount source.
    pub fn needs(&self) -> impl Iterator<Item = (Option<&str>, Action)> + '_ {
        let (first, second) = match self {
            Target::Base => (None, None),
            Target::Catalog => (Some((None, Action::Catalog)), None),
            Target::Repository(r) => (
                Some((Some(r.name.as_str()), r.action)),
                r.mount_from
                    .as_deref()
                    .map(|from| (Some(from), Action::Pull)),
            ),
        };
        first.into_iter().chain(second)
    }

    /// Whether the registry reads the request body; `/v2/` and the catalog
    /// never do.
    pub fn reads_body(&self) -> bool {
        match self {
            Target::Repository(r) => r.reads_body,
            Target::Base | Target::Catalog => false,
        }
    }

    /// The repository for the access log, if any.
    pub fn repository(&self) -> Option<&str> {
        match self {
            Target::Repository(r) => Some(&r.name),
            Target::Base | Target::Catalog => None,
        }
    }
}

/// Why a request was refused before any rule was read. Carries no request
/// data, so it can be logged freely.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteError {
    /// 404: not a path the registry routes (outside `/v2/`, unknown shape,
    /// a name breaking the grammar or in upper case, a bad tag, digest or
    /// upload id, a trailing-slash variant).
    NotFound,
    /// 400: a path different parsers could read differently (percent
    /// escapes, dot segments, empty segments, controls, spaces,
    /// backslashes, non-ASCII).
    BadPath,
    /// 400 `NAME_INVALID`: a repository name over [`MAX_NAME_LEN`].
    NameInvalid,
    /// 400 `DIGEST_INVALID`: where the route needs a digest, one outside
    /// the digest grammar (`algorithm:encoded`): any such segment on a
    /// referrers route, and one with a colon on a blob or manifest route.
    /// (The OCI spec asks 400 of a referrers request with an invalid
    /// digest: a 404 there tells a client the registry has no referrers
    /// API.)
    DigestInvalid,
    /// 405: the route does not serve this method.
    MethodNotAllowed,
    /// 400: parameters the registry reads that we cannot see exactly: an
    /// ambiguous or malformed query on an upload request, an invalid mount
    /// source, or a form-encoded body.
    BadParameters,
}

impl RouteError {
    pub fn status(self) -> u16 {
        match self {
            RouteError::NotFound => 404,
            RouteError::BadPath
            | RouteError::NameInvalid
            | RouteError::DigestInvalid
            | RouteError::BadParameters => 400,
            RouteError::MethodNotAllowed => 405,
        }
    }

    /// The registry's error code for a JSON error body, where it has one.
    pub fn registry_code(self) -> Option<&'static str> {
        match self {
            RouteError::NameInvalid => Some("NAME_INVALID"),
            RouteError::DigestInvalid => Some("DIGEST_INVALID"),
            RouteError::BadPath
            | RouteError::BadParameters
            | RouteError::NotFound
            | RouteError::MethodNotAllowed => None,
        }
    }
}

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RouteError::NotFound => "no registry route for this path",
            RouteError::BadPath => "ambiguous request path",
            RouteError::NameInvalid => "repository name longer than 255 characters",
            RouteError::DigestInvalid => "malformed digest",
            RouteError::MethodNotAllowed => "method not allowed on this registry route",
            RouteError::BadParameters => "ambiguous request parameters",
        })
    }
}

impl std::error::Error for RouteError {}

/// Classifies one request.
///
/// - `path`: the request-target's path, before `?`, as sent (not decoded).
/// - `query`: what follows the first `?`, if there is one. Only POSTs to
///   the upload routes read it, for a mount source; every query is
///   forwarded as sent.
/// - `content_type`: the first `Content-Type` field value, if any, as Go's
///   `Header.Get` would pick it.
///
/// The registry takes `from` through Go's `Request.FormValue`, which also
/// reads form-encoded bodies (`application/x-www-form-urlencoded`, and
/// `multipart/form-data` when the query lacks the key). A mount source sent
/// that way would never appear in the query, so any form media type is
/// refused on every route; no registry client sends one. In the query,
/// `from` is decoded as Go's `url.ParseQuery` does, and anything that
/// parser might treat differently across versions (`;`, a malformed
/// escape, a repeated `from`, more than [`MAX_QUERY_PARAMS`] parameters) is
/// refused.
pub fn classify(
    method: &str,
    path: &str,
    query: Option<&str>,
    content_type: Option<&[u8]>,
) -> Result<Target, RouteError> {
    let Some(rest) = path.strip_prefix("/v2/") else {
        return Err(RouteError::NotFound);
    };
    if !path.bytes().all(is_plain_path_byte) {
        return Err(RouteError::BadPath);
    }
    if content_type.is_some_and(is_form_or_odd_media_type) {
        return Err(RouteError::BadParameters);
    }
    // `rest` has no '%' and only visible ASCII from here on.
    if rest.is_empty() {
        return match method {
            "GET" | "HEAD" => Ok(Target::Base),
            _ => Err(RouteError::MethodNotAllowed),
        };
    }
    let segments: Vec<&str> = rest.split('/').collect();
    // Only the last segment may be empty (`…/blobs/uploads/`).
    let before_last = segments.split_last().map_or(&[][..], |(_, b)| b);
    if before_last.iter().any(|s| s.is_empty()) {
        return Err(RouteError::BadPath);
    }
    if segments.iter().any(|s| *s == "." || *s == "..") {
        return Err(RouteError::BadPath);
    }
    if rest == "_catalog" {
        return match method {
            "GET" => Ok(Target::Catalog),
            _ => Err(RouteError::MethodNotAllowed),
        };
    }

    let (route, name_segments) = split_route(&segments)?;
    // `name_segments` leading segments of `rest`, '/'-joined: a prefix of it.
    let name_len = name_segments
        .iter()
        .map(|s| s.len())
        .sum::<usize>()
        .saturating_add(name_segments.len().saturating_sub(1));
    let name = rest.get(..name_len).ok_or(RouteError::NotFound)?;
    if name.is_empty() || !name_segments.iter().all(|c| is_path_component(c)) {
        return Err(RouteError::NotFound);
    }
    // The route regexp matched; the registry then checks the length.
    if name.len() > MAX_NAME_LEN {
        return Err(RouteError::NameInvalid);
    }

    let action = match (route, method) {
        (RepoRoute::Tags | RepoRoute::Referrers, "GET") => Action::Pull,
        (RepoRoute::Manifest | RepoRoute::Blob, "GET" | "HEAD") => Action::Pull,
        (RepoRoute::Manifest, "PUT") => Action::Push,
        (RepoRoute::Manifest | RepoRoute::Blob, "DELETE") => Action::Delete,
        // One dispatcher serves both upload routes with one method table.
        // All of it is the push protocol: reading an upload's status and
        // cancelling one (DELETE) included, which the registry's own token
        // scopes call pull and delete; nobody but a pusher has an upload.
        (
            RepoRoute::BlobUpload | RepoRoute::BlobUploadChunk,
            "GET" | "HEAD" | "POST" | "PATCH" | "PUT" | "DELETE",
        ) => Action::Push,
        _ => return Err(RouteError::MethodNotAllowed),
    };
    // Only StartBlobUpload (POST on either upload route) mounts, and only
    // it may carry a whole blob (`digest` given: a monolithic upload).
    let (mount_from, reads_body) = match (route, method) {
        (RepoRoute::BlobUpload | RepoRoute::BlobUploadChunk, "POST") => {
            let p = upload_params(query)?;
            (p.from, p.digest)
        }
        (RepoRoute::Manifest, "PUT") => (None, true),
        (RepoRoute::BlobUpload | RepoRoute::BlobUploadChunk, "PATCH" | "PUT") => (None, true),
        _ => (None, false),
    };
    Ok(Target::Repository(RepoRequest {
        route,
        name: name.to_owned(),
        action,
        mount_from,
        reads_body,
    }))
}

/// Picks the route from the trailing segments and returns the name's
/// segments. Validates the reference, digest or upload id; the name is the
/// caller's.
fn split_route<'s, 'a>(segments: &'s [&'a str]) -> Result<(RepoRoute, &'s [&'a str]), RouteError> {
    let n = segments.len();
    let at = |back: usize| n.checked_sub(back).and_then(|i| segments.get(i)).copied();
    let is_upload_tail = at(3) == Some("blobs") && at(2) == Some("uploads");
    let (route, keep, tail_ok) = match (at(2), at(1)) {
        (Some("uploads"), Some("")) if is_upload_tail => (RepoRoute::BlobUpload, n - 3, true),
        (_, Some("")) => return Err(RouteError::NotFound),
        (Some("tags"), Some("list")) => (RepoRoute::Tags, n - 2, true),
        // A reference with a colon can only be a digest.
        (Some("manifests"), Some(r)) if r.contains(':') => {
            (RepoRoute::Manifest, n - 2, check_digest(r).map(|()| true)?)
        }
        (Some("manifests"), Some(r)) => (RepoRoute::Manifest, n - 2, is_tag(r)),
        (Some("referrers"), Some(d)) => {
            (RepoRoute::Referrers, n - 2, check_digest(d).map(|()| true)?)
        }
        // `blobs/NAME` without a colon is the registry's 404 (no route);
        // with one, its DIGEST_INVALID.
        (Some("blobs"), Some(d)) if d.contains(':') => {
            (RepoRoute::Blob, n - 2, check_digest(d).map(|()| true)?)
        }
        (Some("blobs"), Some(_)) => (RepoRoute::Blob, n - 2, false),
        (Some("uploads"), Some(u)) if is_upload_tail => {
            (RepoRoute::BlobUploadChunk, n - 3, is_upload_id(u))
        }
        _ => return Err(RouteError::NotFound),
    };
    if !tail_ok {
        return Err(RouteError::NotFound);
    }
    segments
        .get(..keep)
        .map(|name| (route, name))
        .ok_or(RouteError::NotFound)
}

/// Visible ASCII other than `%` and `\`. Everything a valid registry path
/// contains, and nothing a decoder or normaliser would change.
fn is_plain_path_byte(b: u8) -> bool {
    b.is_ascii_graphic() && b != b'%' && b != b'\\'
}

/// True for a form body Go would parse parameters from, and for a value
/// whose media type Go might read differently than we do (non-ASCII: Go
/// lower-cases and trims Unicode; controls).
fn is_form_or_odd_media_type(value: &[u8]) -> bool {
    if value
        .iter()
        .any(|&b| !(b.is_ascii_graphic() || b == b' ' || b == b'\t'))
    {
        return true;
    }
    let media = value.split(|&b| b == b';').next().unwrap_or_default();
    let media = media.trim_ascii().to_ascii_lowercase();
    media == b"application/x-www-form-urlencoded" || media.starts_with(b"multipart/")
}

/// What StartBlobUpload reads from its query.
#[derive(Debug, Default)]
struct UploadParams {
    /// The mount source as `FormValue("from")` returns it, or `None` when it
    /// is missing or empty (the registry then mounts nothing).
    from: Option<String>,
    /// `FormValue("digest")` is non-empty: the body is the whole blob.
    digest: bool,
}

fn upload_params(query: Option<&str>) -> Result<UploadParams, RouteError> {
    let Some(query) = query else {
        return Ok(UploadParams::default());
    };
    if query.split('&').count() > MAX_QUERY_PARAMS {
        return Err(RouteError::BadParameters);
    }
    let mut from: Option<Vec<u8>> = None;
    let mut digest: Option<Vec<u8>> = None;
    for pair in query.split('&') {
        // Go ≥ 1.17 drops a pair holding ';'; older Go split on it.
        if pair.contains(';') {
            return Err(RouteError::BadParameters);
        }
        if pair.is_empty() {
            continue;
        }
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        // Go drops a pair whose key or value is malformed; refusing instead
        // means no key can hide behind a bad escape.
        let key = query_unescape(key).ok_or(RouteError::BadParameters)?;
        let value = query_unescape(value).ok_or(RouteError::BadParameters)?;
        if key == b"from" {
            // Go takes the first; a repeat is refused so no reader can take
            // another.
            if from.is_some() {
                return Err(RouteError::BadParameters);
            }
            from = Some(value);
        } else if key == b"digest" {
            // Go takes the first value.
            digest.get_or_insert(value);
        }
    }
    let from = match from {
        None => None,
        Some(v) if v.is_empty() => None,
        Some(v) => match String::from_utf8(v) {
            Ok(name) if is_repository_name(&name) => Some(name),
            // The registry would ignore an invalid source (or, for a
            // host-like first component, accept it); either way, refuse.
            _ => return Err(RouteError::BadParameters),
        },
    };
    Ok(UploadParams {
        from,
        digest: digest.is_some_and(|d| !d.is_empty()),
    })
}

/// Go's `url.QueryUnescape`: `+` is a space, `%XX` a byte, any other `%`
/// an error.
fn query_unescape(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        match c {
            b'%' => {
                let hi = hex_value(*b.get(i + 1)?)?;
                let lo = hex_value(*b.get(i + 2)?)?;
                out.push((hi << 4) | lo);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    Some(out)
}

/// The value of one hexadecimal digit (RFC 3986 §2.1 percent-encoding).
pub(crate) fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// A repository name exactly as the registry's grammar has it, without the
/// host-name form of the first component: components joined by `/`, at
/// most [`MAX_NAME_LEN`] characters.
pub fn is_repository_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME_LEN && name.split('/').all(is_path_component)
}

fn is_lower_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
pub fn is_path_component(component: &str) -> bool {
    let b = component.as_bytes();
    let mut i = 0;
    loop {
        let run = b.get(i..).unwrap_or_default();
        let alnum = run.iter().take_while(|&&c| is_lower_alnum(c)).count();
        if alnum == 0 {
            return false;
        }
        i += alnum;
        if i == b.len() {
            return true;
        }
        let run = b.get(i..).unwrap_or_default();
        let sep_len = run.iter().take_while(|&&c| !is_lower_alnum(c)).count();
        let sep = run.get(..sep_len).unwrap_or_default();
        let ok = matches!(sep, b"." | b"_" | b"__") || sep.iter().all(|&c| c == b'-');
        // A separator must be followed by another alphanumeric run.
        if !ok || i + sep_len == b.len() {
            return false;
        }
        i += sep_len;
    }
}

/// `[\w][\w.-]{0,127}`
fn is_tag(s: &str) -> bool {
    let word = |c: &u8| c.is_ascii_alphanumeric() || *c == b'_';
    let b = s.as_bytes();
    match b.split_first() {
        Some((first, rest)) => {
            b.len() <= MAX_TAG_LEN
                && word(first)
                && rest.iter().all(|c| word(c) || *c == b'.' || *c == b'-')
        }
        None => false,
    }
}

/// A digest as either registry line routes it: 2.8's
/// `[a-zA-Z0-9-_+.]+:[a-fA-F0-9]+` and 3.x's
/// `[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+`. Accepting the union is
/// safe: the digest segment cannot change which repository is named, and
/// the registry answers a digest it does not route with 404.
fn is_digest(s: &str) -> bool {
    let Some((alg, enc)) = s.split_once(':') else {
        return false;
    };
    !alg.is_empty()
        && !enc.is_empty()
        && alg
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'+' | b'.'))
        && enc
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'=' | b'_' | b'-'))
}

/// A digest of the route grammar's shape passes; a malformed one is
/// refused here, with the registry's `DIGEST_INVALID`, rather than routed
/// nowhere (404) or sent on. Whether the algorithm and length are right is
/// the registry's to say (it answers `DIGEST_INVALID` itself).
fn check_digest(s: &str) -> Result<(), RouteError> {
    if is_digest(s) {
        Ok(())
    } else {
        Err(RouteError::DigestInvalid)
    }
}

/// `[a-zA-Z0-9-_.=]+`
fn is_upload_id(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'='))
}

/// Which paths are ours at all, and which clients the recipe turns away.
pub mod policy;
/// The registry's own router, for the unit tests and the fuzz targets.
pub mod summary;

#[cfg(any(test, feature = "fuzzing"))]
pub mod reference;

#[cfg(test)]
mod tests;
