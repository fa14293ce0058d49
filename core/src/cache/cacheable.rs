//! Which requests the cache may answer: `GET` or `HEAD` of a blob by
//! digest, or of a manifest by digest. Only content-addressed bodies are
//! cached, so what a URL names can never change under the cache: never a
//! manifest by tag, a tag list, the referrers list (it grows as artifacts
//! are pushed), the catalog, an upload, or any other method. A digest
//! outside the canonical sha256/sha512 form is forwarded as today.
//!
//! This runs after the access rules, on the [`Target`] they allowed.

use super::digest::BlobDigest;
use super::entry::Kind;
use crate::route::{RepoRoute, Target};

/// A request the cache may answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cacheable {
    pub kind: Kind,
    pub repository: String,
    pub digest: BlobDigest,
}

/// `Some` for a cacheable request. `path` is the request-target's path
/// (before `?`) that `route::classify` made `target` of: the target holds
/// the route and repository, the path's last segment the reference, as
/// `route::summary` reads it.
pub fn cacheable(method: &str, path: &str, target: &Target) -> Option<Cacheable> {
    if !matches!(method, "GET" | "HEAD") {
        return None;
    }
    let Target::Repository(r) = target else {
        return None;
    };
    let kind = match r.route {
        RepoRoute::Blob => Kind::Blob,
        RepoRoute::Manifest => Kind::Manifest,
        RepoRoute::Tags
        | RepoRoute::Referrers
        | RepoRoute::BlobUpload
        | RepoRoute::BlobUploadChunk => return None,
    };
    let (rest, reference) = path.rsplit_once('/')?;
    let route_segment = if kind == Kind::Blob {
        "/blobs"
    } else {
        "/manifests"
    };
    // The path must be the one classified: `/v2/<name>/<route>/<ref>`.
    if rest.strip_prefix("/v2/")?.strip_suffix(route_segment)? != r.name {
        return None;
    }
    Some(Cacheable {
        kind,
        repository: r.name.clone(),
        digest: BlobDigest::parse(reference)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::classify;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn check(method: &str, path: &str) -> Option<Cacheable> {
        let (path, query) = match path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path, None),
        };
        let target = classify(method, path, query, None).ok()?;
        cacheable(method, path, &target)
    }

    #[test]
    fn blobs_and_manifests_by_digest() {
        let want = |kind| {
            Some(Cacheable {
                kind,
                repository: "team/app".into(),
                digest: BlobDigest::parse(D).expect("valid"),
            })
        };
        for method in ["GET", "HEAD"] {
            let blob = format!("/v2/team/app/blobs/{D}");
            assert_eq!(check(method, &blob), want(Kind::Blob));
            assert_eq!(check(method, &format!("{blob}?x=1")), want(Kind::Blob));
            let manifest = format!("/v2/team/app/manifests/{D}");
            assert_eq!(check(method, &manifest), want(Kind::Manifest));
        }
        let sha512 = format!("sha512:{}", "ab".repeat(64));
        let got = check("GET", &format!("/v2/x/blobs/{sha512}")).expect("sha512");
        assert_eq!(got.digest.to_string(), sha512);
        assert_eq!(got.repository, "x");
    }

    #[test]
    fn everything_else_is_not() {
        let hex = &D[7..];
        let refused = [
            ("GET", "/v2/".to_owned()),
            ("GET", "/v2/_catalog".into()),
            ("GET", "/v2/team/app/manifests/latest".into()),
            ("GET", "/v2/team/app/manifests/sha256".into()),
            ("GET", "/v2/team/app/tags/list".into()),
            ("GET", format!("/v2/team/app/referrers/{D}")),
            ("GET", "/v2/team/app/blobs/uploads/".into()),
            ("GET", "/v2/team/app/blobs/uploads/abc".into()),
            ("HEAD", "/v2/team/app/blobs/uploads/abc".into()),
            ("DELETE", format!("/v2/team/app/blobs/{D}")),
            ("DELETE", format!("/v2/team/app/manifests/{D}")),
            ("PUT", format!("/v2/team/app/manifests/{D}")),
            (
                "POST",
                format!("/v2/team/app/blobs/uploads/?mount={D}&from=x"),
            ),
            // Digests the registry routes but the cache does not key by.
            (
                "GET",
                format!("/v2/team/app/blobs/sha256:{}", hex.to_uppercase()),
            ),
            ("GET", format!("/v2/team/app/blobs/sha256:{}", &hex[1..])),
            ("GET", format!("/v2/team/app/blobs/sha384:{hex}")),
            ("GET", format!("/v2/team/app/blobs/sha256+b64:{hex}")),
            ("GET", format!("/v2/team/app/manifests/sha512:{hex}")),
        ];
        for (method, path) in refused {
            assert_eq!(check(method, &path), None, "{method} {path}");
        }
    }

    #[test]
    fn a_path_that_is_not_the_targets_is_refused() {
        let target = classify("GET", &format!("/v2/a/blobs/{D}"), None, None).expect("routes");
        assert!(cacheable("GET", &format!("/v2/a/blobs/{D}"), &target).is_some());
        assert_eq!(cacheable("GET", &format!("/v2/b/blobs/{D}"), &target), None);
        assert_eq!(
            cacheable("GET", &format!("/v2/a/manifests/{D}"), &target),
            None
        );
        assert_eq!(cacheable("GET", D, &target), None);
    }
}
