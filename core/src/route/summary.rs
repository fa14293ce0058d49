//! What the access log and the metrics say about a request: its [`Kind`]
//! (the rules' actions, plus `mount`, `ping` and `other`), repository, and
//! the digest or tag the route names. Pure: a function of the request line
//! and the [`Target`] the classifier gave, if it gave one.

use std::borrow::Cow;

use super::{RepoRoute, Target};
use crate::route::Action;

/// A request's kind, for logs and metric labels: a small fixed set, so a
/// label never grows with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Pull,
    Push,
    Delete,
    /// A cross-repository blob mount (`POST …/blobs/uploads/?mount=&from=`).
    Mount,
    Catalog,
    /// `GET /v2/`, the version check clients send first.
    Ping,
    /// Anything the classifier refused (404, 400, 405) or never saw.
    Other,
}

impl Kind {
    pub const ALL: [Kind; 7] = [
        Kind::Pull,
        Kind::Push,
        Kind::Delete,
        Kind::Mount,
        Kind::Catalog,
        Kind::Ping,
        Kind::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Pull => "pull",
            Kind::Push => "push",
            Kind::Delete => "delete",
            Kind::Mount => "mount",
            Kind::Catalog => "catalog",
            Kind::Ping => "ping",
            Kind::Other => "other",
        }
    }

    /// Position in [`Kind::ALL`], for per-kind metric arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The inverse of [`as_str`](Self::as_str).
    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

/// What a route names besides the repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference<'a> {
    Digest(Cow<'a, str>),
    Tag(&'a str),
}

/// The log's view of one request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Summary<'a> {
    pub kind: Option<Kind>,
    pub repository: Option<&'a str>,
    pub reference: Option<Reference<'a>>,
    /// A mount's source repository.
    pub mount_from: Option<&'a str>,
}

impl Summary<'_> {
    pub fn kind(&self) -> Kind {
        self.kind.unwrap_or(Kind::Other)
    }
}

/// Summarises a request whose path (before `?`) is `path` and query
/// `query`; `target` is what `route::classify` made of it, `None` when it
/// refused it or never ran.
pub fn summarize<'a>(
    method: &str,
    path: &'a str,
    query: Option<&'a str>,
    target: Option<&'a Target>,
) -> Summary<'a> {
    let Some(target) = target else {
        return Summary::default();
    };
    let r = match target {
        Target::Base => return only(Kind::Ping),
        Target::Catalog => return only(Kind::Catalog),
        Target::Repository(r) => r,
    };
    let upload = matches!(r.route, RepoRoute::BlobUpload | RepoRoute::BlobUploadChunk);
    let kind = match r.action {
        _ if upload && method == "POST" && r.mount_from.is_some() => Kind::Mount,
        Action::Pull => Kind::Pull,
        Action::Push => Kind::Push,
        Action::Delete => Kind::Delete,
        Action::Catalog => Kind::Catalog,
    };
    let last = path.rsplit('/').next().unwrap_or_default();
    let reference = match r.route {
        RepoRoute::Manifest if last.contains(':') => Some(Reference::Digest(last.into())),
        RepoRoute::Manifest => Some(Reference::Tag(last)),
        RepoRoute::Blob | RepoRoute::Referrers => Some(Reference::Digest(last.into())),
        RepoRoute::BlobUpload | RepoRoute::BlobUploadChunk => {
            let key = if kind == Kind::Mount {
                "mount"
            } else {
                "digest"
            };
            query_value(query, key).map(Reference::Digest)
        }
        RepoRoute::Tags => None,
    };
    Summary {
        kind: Some(kind),
        repository: Some(&r.name),
        reference,
        mount_from: r.mount_from.as_deref(),
    }
}

fn only(kind: Kind) -> Summary<'static> {
    Summary {
        kind: Some(kind),
        ..Summary::default()
    }
}

/// The first non-empty `key=` value of `query`, percent-decoded (a client
/// may write `sha256%3A…`). A malformed escape is kept as written: this is
/// for the log only, the classifier already judged the query.
fn query_value<'a>(query: Option<&'a str>, key: &str) -> Option<Cow<'a, str>> {
    let raw = query?
        .split('&')
        .filter_map(|p| p.split_once('='))
        .find(|(k, v)| *k == key && !v.is_empty())?
        .1;
    if !raw.contains('%') {
        return Some(Cow::Borrowed(raw));
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(Cow::Owned(String::from_utf8_lossy(&out).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::classify;

    fn summary_of(method: &str, target: &str) -> (Kind, Option<String>, Option<String>) {
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (target, None),
        };
        let t = classify(method, path, query, None).ok();
        let s = summarize(method, path, query, t.as_ref());
        let kind = s.kind();
        let reference = s.reference.map(|r| match r {
            Reference::Digest(d) => format!("digest {d}"),
            Reference::Tag(t) => format!("tag {t}"),
        });
        (kind, s.repository.map(str::to_owned), reference)
    }

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn kinds_and_references() {
        let digest = Some(format!("digest {D}"));
        let repo = Some("team/app".to_owned());
        assert_eq!(summary_of("GET", "/v2/"), (Kind::Ping, None, None));
        assert_eq!(
            summary_of("GET", "/v2/_catalog"),
            (Kind::Catalog, None, None)
        );
        assert_eq!(
            summary_of("GET", "/v2/team/app/manifests/v1"),
            (Kind::Pull, repo.clone(), Some("tag v1".into()))
        );
        assert_eq!(
            summary_of("HEAD", &format!("/v2/team/app/blobs/{D}")),
            (Kind::Pull, repo.clone(), digest.clone())
        );
        assert_eq!(
            summary_of("DELETE", &format!("/v2/team/app/manifests/{D}")),
            (Kind::Delete, repo.clone(), digest.clone())
        );
        assert_eq!(
            summary_of("PATCH", "/v2/team/app/blobs/uploads/abc-def"),
            (Kind::Push, repo.clone(), None)
        );
        let d_escaped = D.replace(':', "%3A");
        assert_eq!(
            summary_of(
                "PUT",
                &format!("/v2/team/app/blobs/uploads/abc?_state=x&digest={d_escaped}")
            ),
            (Kind::Push, repo.clone(), digest.clone())
        );
        assert_eq!(
            summary_of(
                "GET",
                &format!("/v2/team/app/referrers/{D}?artifactType=application/x")
            ),
            (Kind::Pull, repo.clone(), digest.clone())
        );
        assert_eq!(
            summary_of(
                "POST",
                &format!("/v2/team/app/blobs/uploads/?mount={D}&from=base/os")
            ),
            (Kind::Mount, repo, digest)
        );
        assert_eq!(
            summary_of("GET", "/v2/UPPER/tags/list"),
            (Kind::Other, None, None)
        );
    }

    #[test]
    fn kind_names_round_trip() {
        for k in Kind::ALL {
            assert_eq!(Kind::from_name(k.as_str()), Some(k));
            assert_eq!(Kind::ALL[k.index()], k);
        }
    }
}
