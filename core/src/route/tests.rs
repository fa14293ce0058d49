#![allow(clippy::unwrap_used)]

use super::*;
use RepoRoute::*;

// The registry's own router, as a reference for `agrees_with_the_registry_router`.
use super::reference::{self, Registry28};

const D: &str = "sha256:6c3c624b58dbbcd3c0dd82b4c53f04194d1247c6eebdaab7c610cf7d66709b3b";

/// What a table row expects.
#[derive(Debug)]
enum Want {
    Base,
    Catalog,
    Repo(RepoRoute, &'static str, Action),
    /// A POST to an upload route: push on the name, pull on the source.
    Mount(RepoRoute, &'static str, &'static str),
    Err(RouteError),
}

fn check(method: &str, path: &str, query: Option<&str>, ct: Option<&[u8]>, want: &Want) {
    let got = classify(method, path, query, ct);
    let ok = match (want, &got) {
        (Want::Base, Ok(Target::Base)) | (Want::Catalog, Ok(Target::Catalog)) => true,
        (Want::Repo(route, name, action), Ok(Target::Repository(r))) => {
            r.route == *route && r.name == *name && r.action == *action && r.mount_from.is_none()
        }
        (Want::Mount(route, name, from), Ok(Target::Repository(r))) => {
            r.route == *route
                && r.name == *name
                && r.action == Action::Push
                && r.mount_from.as_deref() == Some(*from)
        }
        (Want::Err(e), Err(g)) => e == g,
        _ => false,
    };
    assert!(
        ok,
        "{method} {path:?} ?{query:?} ct={ct:?}: want {want:?}, got {got:?}"
    );
}

fn table(rows: &[(&str, &str, Want)]) {
    for (method, path, want) in rows {
        check(method, path, None, None, want);
    }
}

use Action::{Delete, Pull, Push};
use RouteError::{BadParameters, BadPath, DigestInvalid, MethodNotAllowed, NameInvalid, NotFound};

#[test]
fn every_route_and_method() {
    let m_tag = "/v2/library/alpine/manifests/3.20";
    let m_dig = format!("/v2/library/alpine/manifests/{D}");
    let blob = format!("/v2/library/alpine/blobs/{D}");
    let refs = format!("/v2/library/alpine/referrers/{D}");
    let up = "/v2/library/alpine/blobs/uploads/";
    let chunk = "/v2/library/alpine/blobs/uploads/6c0e1f7a-2b4d-4f3e-9a1b-7d2c8e5f0a13";
    let n = "library/alpine";
    #[rustfmt::skip]
    let rows: Vec<(&str, &str, Want)> = vec![
        // base
        ("GET", "/v2/", Want::Base),
        ("HEAD", "/v2/", Want::Base),
        ("POST", "/v2/", Want::Err(MethodNotAllowed)),
        ("PUT", "/v2/", Want::Err(MethodNotAllowed)),
        ("DELETE", "/v2/", Want::Err(MethodNotAllowed)),
        ("OPTIONS", "/v2/", Want::Err(MethodNotAllowed)),
        ("get", "/v2/", Want::Err(MethodNotAllowed)),
        // catalog
        ("GET", "/v2/_catalog", Want::Catalog),
        ("HEAD", "/v2/_catalog", Want::Err(MethodNotAllowed)),
        ("POST", "/v2/_catalog", Want::Err(MethodNotAllowed)),
        ("DELETE", "/v2/_catalog", Want::Err(MethodNotAllowed)),
        // tags: GET only, as the registry's tagsDispatcher
        ("GET", "/v2/library/alpine/tags/list", Want::Repo(Tags, n, Pull)),
        ("HEAD", "/v2/library/alpine/tags/list", Want::Err(MethodNotAllowed)),
        ("PUT", "/v2/library/alpine/tags/list", Want::Err(MethodNotAllowed)),
        ("DELETE", "/v2/library/alpine/tags/list", Want::Err(MethodNotAllowed)),
        // manifests by tag and by digest
        ("GET", m_tag, Want::Repo(Manifest, n, Pull)),
        ("HEAD", m_tag, Want::Repo(Manifest, n, Pull)),
        ("PUT", m_tag, Want::Repo(Manifest, n, Push)),
        ("DELETE", m_tag, Want::Repo(Manifest, n, Delete)),
        ("POST", m_tag, Want::Err(MethodNotAllowed)),
        ("PATCH", m_tag, Want::Err(MethodNotAllowed)),
        ("OPTIONS", m_tag, Want::Err(MethodNotAllowed)),
        ("Get", m_tag, Want::Err(MethodNotAllowed)),
        ("GET", &m_dig, Want::Repo(Manifest, n, Pull)),
        ("HEAD", &m_dig, Want::Repo(Manifest, n, Pull)),
        ("PUT", &m_dig, Want::Repo(Manifest, n, Push)),
        ("DELETE", &m_dig, Want::Repo(Manifest, n, Delete)),
        // referrers (OCI 1.1): GET only, as the spec defines it
        ("GET", &refs, Want::Repo(Referrers, n, Pull)),
        ("HEAD", &refs, Want::Err(MethodNotAllowed)),
        ("PUT", &refs, Want::Err(MethodNotAllowed)),
        ("DELETE", &refs, Want::Err(MethodNotAllowed)),
        ("POST", &refs, Want::Err(MethodNotAllowed)),
        // blobs
        ("GET", &blob, Want::Repo(Blob, n, Pull)),
        ("HEAD", &blob, Want::Repo(Blob, n, Pull)),
        ("DELETE", &blob, Want::Repo(Blob, n, Delete)),
        ("PUT", &blob, Want::Err(MethodNotAllowed)),
        ("POST", &blob, Want::Err(MethodNotAllowed)),
        ("PATCH", &blob, Want::Err(MethodNotAllowed)),
        // uploads: every method of the upload dispatcher is push
        ("POST", up, Want::Repo(BlobUpload, n, Push)),
        ("GET", up, Want::Repo(BlobUpload, n, Push)),
        ("HEAD", up, Want::Repo(BlobUpload, n, Push)),
        ("PATCH", up, Want::Repo(BlobUpload, n, Push)),
        ("PUT", up, Want::Repo(BlobUpload, n, Push)),
        ("DELETE", up, Want::Repo(BlobUpload, n, Push)),
        ("OPTIONS", up, Want::Err(MethodNotAllowed)),
        ("TRACE", up, Want::Err(MethodNotAllowed)),
        ("PATCH", chunk, Want::Repo(BlobUploadChunk, n, Push)),
        ("PUT", chunk, Want::Repo(BlobUploadChunk, n, Push)),
        ("GET", chunk, Want::Repo(BlobUploadChunk, n, Push)),
        ("HEAD", chunk, Want::Repo(BlobUploadChunk, n, Push)),
        ("DELETE", chunk, Want::Repo(BlobUploadChunk, n, Push)),
        ("POST", chunk, Want::Repo(BlobUploadChunk, n, Push)),
        ("BREW", chunk, Want::Err(MethodNotAllowed)),
    ];
    table(&rows);
}

#[test]
fn references_digests_and_upload_ids() {
    let tag128 = format!("/v2/a/manifests/{}", "t".repeat(128));
    let tag129 = format!("/v2/a/manifests/{}", "t".repeat(129));
    #[rustfmt::skip]
    let rows: Vec<(&str, &str, Want)> = vec![
        ("GET", "/v2/a/manifests/latest", Want::Repo(Manifest, "a", Pull)),
        ("GET", "/v2/a/manifests/_x", Want::Repo(Manifest, "a", Pull)),
        ("GET", "/v2/a/manifests/V1.2-rc_3", Want::Repo(Manifest, "a", Pull)),
        ("GET", &tag128, Want::Repo(Manifest, "a", Pull)),
        ("GET", &tag129, Want::Err(NotFound)),
        ("GET", "/v2/a/manifests/.latest", Want::Err(NotFound)),
        ("GET", "/v2/a/manifests/-latest", Want::Err(NotFound)),
        ("GET", "/v2/a/manifests/lat+est", Want::Err(NotFound)),
        ("GET", "/v2/a/manifests/latest#x", Want::Err(NotFound)),
        ("GET", "/v2/a/manifests/latest?x", Want::Err(NotFound)),
        ("GET", "/v2/a/manifests/sha256:", Want::Err(DigestInvalid)),
        ("GET", "/v2/a/manifests/:abc", Want::Err(DigestInvalid)),
        // Digests of both registry lines route; the digest cannot change
        // the repository.
        ("GET", "/v2/a/blobs/sha256:abc", Want::Repo(Blob, "a", Pull)),
        ("GET", "/v2/a/blobs/SHA256:ABC", Want::Repo(Blob, "a", Pull)),
        ("GET", "/v2/a/blobs/sha256+b64u:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564", Want::Repo(Blob, "a", Pull)),
        ("GET", "/v2/a/blobs/sha256", Want::Err(NotFound)),
        ("GET", "/v2/a/blobs/sha256:abc:def", Want::Err(DigestInvalid)),
        ("GET", "/v2/a/blobs/sha256:ab!c", Want::Err(DigestInvalid)),
        ("GET", "/v2/a/blobs/latest", Want::Err(NotFound)),
        // A referrers list is of a digest, never a tag.
        ("GET", "/v2/a/referrers/sha256:abc", Want::Repo(Referrers, "a", Pull)),
        ("GET", "/v2/a/referrers/SHA256:ABC", Want::Repo(Referrers, "a", Pull)),
        ("GET", "/v2/a/referrers/latest", Want::Err(DigestInvalid)),
        ("GET", "/v2/a/referrers/sha256:", Want::Err(DigestInvalid)),
        ("GET", "/v2/a/referrers/sha256:ab!c", Want::Err(DigestInvalid)),
        ("GET", "/v2/a/referrers/sha256:abc:def", Want::Err(DigestInvalid)),
        ("PATCH", "/v2/a/blobs/uploads/Ab-_.=9", Want::Repo(BlobUploadChunk, "a", Push)),
        ("PATCH", "/v2/a/blobs/uploads/a:b", Want::Err(NotFound)),
        ("PATCH", "/v2/a/blobs/uploads/a+b", Want::Err(NotFound)),
    ];
    table(&rows);
}

#[test]
fn trailing_slash_variants_are_not_routes() {
    let blob = format!("/v2/a/blobs/{D}/");
    let refs = format!("/v2/a/referrers/{D}/");
    #[rustfmt::skip]
    let rows: Vec<(&str, &str, Want)> = vec![
        ("GET", "/v2/a/tags/list/", Want::Err(NotFound)),
        ("GET", "/v2/a/manifests/latest/", Want::Err(NotFound)),
        ("GET", &blob, Want::Err(NotFound)),
        ("GET", &refs, Want::Err(NotFound)),
        ("GET", "/v2/a/referrers/", Want::Err(NotFound)),
        ("GET", "/v2/a/referrers", Want::Err(NotFound)),
        // Without the slash it is the blob route with digest "uploads".
        ("POST", "/v2/a/blobs/uploads", Want::Err(NotFound)),
        ("PATCH", "/v2/a/blobs/uploads/abc/", Want::Err(NotFound)),
        ("GET", "/v2/_catalog/", Want::Err(NotFound)),
        ("GET", "/v2/a/", Want::Err(NotFound)),
        ("GET", "/v2/a/manifests/", Want::Err(NotFound)),
        ("GET", "/v2/a/manifests", Want::Err(NotFound)),
        ("GET", "/v2/a/tags", Want::Err(NotFound)),
        ("GET", "/v2/a/tags/", Want::Err(NotFound)),
        ("GET", "/v2/a/blobs/", Want::Err(NotFound)),
        ("GET", "/v2/a", Want::Err(NotFound)),
    ];
    table(&rows);
}

#[test]
fn names_by_the_grammar() {
    #[rustfmt::skip]
    let good = [
        "a",
        "0",
        "9a",
        "a/b/c",
        "library/alpine",
        "a.b",
        "a_b",
        "a__b",
        "a-b",
        "a--b",
        "a---b",
        "a.b-c_d__e",
        "team-a/x/y/z",
        "localhost/x",
        "example.com/x",
        // Route words are ordinary components.
        "manifests",
        "a/blobs/uploads",
        "tags/list",
        "v2",
    ];
    for name in good {
        let path = format!("/v2/{name}/manifests/latest");
        check("GET", &path, None, None, &Want::Repo(Manifest, name, Pull));
        assert!(is_repository_name(name), "{name}");
    }
    #[rustfmt::skip]
    let bad = [
        "A",
        "a/B",
        "Abc/def",
        "Example.com/x",
        "localhost:5000/x",
        "[::1]/x",
        "a:b",
        "a..b",
        "a.-b",
        "a-.b",
        "a_.b",
        "a._b",
        "a___b",
        "-a",
        "a-",
        "a.",
        "_a",
        "a_",
        "__",
        "_catalog",
        "a@b",
        "a+b",
        "a~b",
        "a=b",
        "a!b",
        "a,b",
        "a'b",
        "a(b)",
        "a*b",
        "a$b",
    ];
    for name in bad {
        let path = format!("/v2/{name}/manifests/latest");
        check("GET", &path, None, None, &Want::Err(NotFound));
        assert!(!is_repository_name(name), "{name}");
    }
    assert!(!is_repository_name(""));
    assert!(!is_repository_name("a/"));
    assert!(!is_repository_name("/a"));
    assert!(!is_repository_name("a//b"));
}

#[test]
fn name_length_limit() {
    let n255 = format!("{}/{}", "a".repeat(127), "b".repeat(127));
    assert_eq!(n255.len(), 255);
    let n256 = format!("{n255}c");
    let leaked: &'static str = Box::leak(n255.into_boxed_str());
    check(
        "GET",
        &format!("/v2/{leaked}/tags/list"),
        None,
        None,
        &Want::Repo(Tags, leaked, Pull),
    );
    check(
        "GET",
        &format!("/v2/{n256}/tags/list"),
        None,
        None,
        &Want::Err(NameInvalid),
    );
    check(
        "PUT",
        &format!("/v2/{n256}/manifests/x"),
        None,
        None,
        &Want::Err(NameInvalid),
    );
    // The grammar is checked first, as the registry's route regexp is.
    let bad256 = format!("{}B", "a".repeat(255));
    check(
        "GET",
        &format!("/v2/{bad256}/tags/list"),
        None,
        None,
        &Want::Err(NotFound),
    );
    // And the method after both, as the registry's dispatcher does.
    check(
        "BREW",
        &format!("/v2/{n256}/tags/list"),
        None,
        None,
        &Want::Err(NameInvalid),
    );
    check(
        "BREW",
        &format!("/v2/{bad256}/tags/list"),
        None,
        None,
        &Want::Err(NotFound),
    );
    assert!(is_repository_name(leaked));
    assert!(!is_repository_name(&n256));
    assert_eq!(NameInvalid.registry_code(), Some("NAME_INVALID"));
}

/// Every way to make one repository look like another.
#[test]
fn bypass_attempts_never_reach_a_rule() {
    #[rustfmt::skip]
    let rows: Vec<(&str, &str, Want)> = vec![
        // Percent-encoding, any at all: the registry decodes before routing.
        ("GET", "/v2/public%2fsecret/manifests/latest", Want::Err(BadPath)),
        ("GET", "/v2/public%2Fsecret/manifests/latest", Want::Err(BadPath)),
        ("GET", "/v2/public/%2e%2e/secret/manifests/latest", Want::Err(BadPath)),
        ("GET", "/v2/public/%2E%2E/secret/manifests/latest", Want::Err(BadPath)),
        ("GET", "/v2/public/.%2e/secret/manifests/latest", Want::Err(BadPath)),
        ("GET", "/v2/%73ecret/manifests/latest", Want::Err(BadPath)),
        ("GET", "/v2/secret/manifests/lat%65st", Want::Err(BadPath)),
        ("GET", "/v2/secret%00/manifests/latest", Want::Err(BadPath)),
        ("GET", "/v2/secret/manifests%2flatest", Want::Err(BadPath)),
        ("GET", "/v2/a%", Want::Err(BadPath)),
        ("GET", "/v2/%252e%252e/x/manifests/y", Want::Err(BadPath)),
        // Dot segments: the registry's router redirects to the cleaned path.
        ("GET", "/v2/public/../secret/manifests/latest", Want::Err(BadPath)),
        ("GET", "/v2/public/manifests/../../secret/manifests/latest", Want::Err(BadPath)),
        ("GET", "/v2/./secret/manifests/latest", Want::Err(BadPath)),
        ("GET", "/v2/public/./x/manifests/latest", Want::Err(BadPath)),
        ("GET", "/v2/../v2/secret/manifests/latest", Want::Err(BadPath)),
        ("GET", "/v2/secret/manifests/..", Want::Err(BadPath)),
        ("GET", "/v2/secret/manifests/.", Want::Err(BadPath)),
        ("GET", "/v2/_catalog/../secret/tags/list", Want::Err(BadPath)),
        ("GET", "/v2/..", Want::Err(BadPath)),
        // Empty segments.
        ("GET", "/v2//secret/manifests/latest", Want::Err(BadPath)),
        ("GET", "/v2/public//secret/manifests/latest", Want::Err(BadPath)),
        ("GET", "/v2/secret/manifests//latest", Want::Err(BadPath)),
        ("POST", "/v2/secret/blobs/uploads//", Want::Err(BadPath)),
        ("GET", "/v2//", Want::Err(BadPath)),
        // Backslashes, controls, spaces, non-ASCII.
        ("GET", "/v2/public\\..\\secret/manifests/latest", Want::Err(BadPath)),
        ("GET", "/v2/secret\0/manifests/latest", Want::Err(BadPath)),
        ("GET", "/v2/sec\tret/manifests/latest", Want::Err(BadPath)),
        ("GET", "/v2/sec ret/manifests/latest", Want::Err(BadPath)),
        ("GET", "/v2/secret\x7f/manifests/latest", Want::Err(BadPath)),
        ("GET", "/v2/secret\r\n/manifests/latest", Want::Err(BadPath)),
        ("GET", "/v2/sécret/manifests/latest", Want::Err(BadPath)),
        ("GET", "/v2/secret/manifests/latést", Want::Err(BadPath)),
        // Upper case and host-like first components.
        ("GET", "/v2/Secret/manifests/latest", Want::Err(NotFound)),
        ("GET", "/v2/SECRET/x/manifests/latest", Want::Err(NotFound)),
        ("GET", "/v2/localhost:5000/secret/manifests/latest", Want::Err(NotFound)),
        ("GET", "/v2/public/Secret/manifests/latest", Want::Err(NotFound)),
        // Outside /v2/, or not quite it.
        ("GET", "/V2/secret/manifests/latest", Want::Err(NotFound)),
        ("GET", "//v2/secret/manifests/latest", Want::Err(NotFound)),
        ("GET", "/v2", Want::Err(NotFound)),
        ("GET", "/v2x/", Want::Err(NotFound)),
        ("GET", "", Want::Err(NotFound)),
        ("GET", "http://h/v2/secret/manifests/latest", Want::Err(NotFound)),
        // Route words inside names split exactly as the registry splits them.
        ("GET", "/v2/a/manifests/b/manifests/c", Want::Repo(Manifest, "a/manifests/b", Pull)),
        ("GET", "/v2/a/blobs/uploads/tags/list", Want::Repo(Tags, "a/blobs/uploads", Pull)),
        ("POST", "/v2/x/manifests/blobs/uploads/", Want::Repo(BlobUpload, "x/manifests", Push)),
        ("GET", "/v2/tags/list/tags/list", Want::Repo(Tags, "tags/list", Pull)),
        ("GET", "/v2/a/blobs/blobs/sha256:ab", Want::Repo(Blob, "a/blobs", Pull)),
        ("GET", "/v2/tags/list", Want::Err(NotFound)),
        ("POST", "/v2/blobs/uploads/", Want::Err(NotFound)),
        ("GET", "/v2/manifests/latest", Want::Err(NotFound)),
        ("GET", "/v2/_catalog/tags/list", Want::Err(NotFound)),
    ];
    table(&rows);
}

#[test]
fn cross_repository_mount() {
    let up = "/v2/mine/blobs/uploads/";
    let chunk = "/v2/mine/blobs/uploads/abc";
    let q = |s: &'static str| Some(s);
    #[rustfmt::skip]
    let rows: Vec<(&str, &str, Option<&str>, Want)> = vec![
        ("POST", up, q("mount=sha256:ab&from=other/repo"), Want::Mount(BlobUpload, "mine", "other/repo")),
        ("POST", up, q("from=other/repo&mount=sha256:ab"), Want::Mount(BlobUpload, "mine", "other/repo")),
        // Pull on the source is needed whenever the registry sees a
        // non-empty `from`, with or without `mount`, as its own check does.
        ("POST", up, q("from=other"), Want::Mount(BlobUpload, "mine", "other")),
        // POST on an upload id starts a new upload too, mount included.
        ("POST", chunk, q("_state=x&mount=sha256:ab&from=other"), Want::Mount(BlobUploadChunk, "mine", "other")),
        // Decoded as Go's ParseQuery decodes it.
        ("POST", up, q("mount=d&from=secret%2Frepo"), Want::Mount(BlobUpload, "mine", "secret/repo")),
        ("POST", up, q("mount=d&fr%6Fm=secret"), Want::Mount(BlobUpload, "mine", "secret")),
        ("POST", up, q("mount=d&%66%72%6f%6d=secret"), Want::Mount(BlobUpload, "mine", "secret")),
        ("POST", up, q("&&mount=d&from=secret&"), Want::Mount(BlobUpload, "mine", "secret")),
        ("POST", up, q("mount=d&from=se%63ret"), Want::Mount(BlobUpload, "mine", "secret")),
        // No source: a plain upload.
        ("POST", up, None, Want::Repo(BlobUpload, "mine", Push)),
        ("POST", up, q(""), Want::Repo(BlobUpload, "mine", Push)),
        ("POST", up, q("mount=sha256:ab"), Want::Repo(BlobUpload, "mine", Push)),
        ("POST", up, q("mount=d&from="), Want::Repo(BlobUpload, "mine", Push)),
        ("POST", up, q("mount=d&from"), Want::Repo(BlobUpload, "mine", Push)),
        ("POST", up, q("digest=sha256%3Aab"), Want::Repo(BlobUpload, "mine", Push)),
        ("POST", up, q("mount=d&fromx=secret"), Want::Repo(BlobUpload, "mine", Push)),
        ("POST", up, q("mount=d&From=secret"), Want::Repo(BlobUpload, "mine", Push)),
        // Only POST mounts; other methods ignore the query.
        ("PATCH", chunk, q("from=secret&mount=d"), Want::Repo(BlobUploadChunk, "mine", Push)),
        ("PUT", chunk, q("from=secret&digest=d"), Want::Repo(BlobUploadChunk, "mine", Push)),
        ("GET", "/v2/mine/manifests/x", q("from=%zz;"), Want::Repo(Manifest, "mine", Pull)),
        // Ambiguous or invalid: refused.
        ("POST", up, q("mount=d&from=a&from=b"), Want::Err(BadParameters)),
        ("POST", up, q("mount=d&from=a&fr%6fm=b"), Want::Err(BadParameters)),
        ("POST", up, q("mount=d&from=a;from=b"), Want::Err(BadParameters)),
        ("POST", up, q("mount=d;from=secret"), Want::Err(BadParameters)),
        ("POST", up, q("mount=d&from=%zz"), Want::Err(BadParameters)),
        ("POST", up, q("mount=d&from=%2"), Want::Err(BadParameters)),
        ("POST", up, q("x=%zz&from=a"), Want::Err(BadParameters)),
        ("POST", up, q("fr%zzom=secret"), Want::Err(BadParameters)),
        ("POST", up, q("mount=d&from=Secret"), Want::Err(BadParameters)),
        ("POST", up, q("mount=d&from=Example.com%3A5000%2Fx"), Want::Err(BadParameters)),
        ("POST", up, q("mount=d&from=a+b"), Want::Err(BadParameters)),
        ("POST", up, q("mount=d&from=a/../b"), Want::Err(BadParameters)),
        ("POST", up, q("mount=d&from=a//b"), Want::Err(BadParameters)),
        ("POST", up, q("mount=d&from=%C3%A9"), Want::Err(BadParameters)),
        ("POST", up, q("mount=d&from=%FF"), Want::Err(BadParameters)),
        ("POST", up, q("mount=d&from=/a"), Want::Err(BadParameters)),
    ];
    for (method, path, query, want) in &rows {
        check(method, path, *query, None, want);
    }
    let long = format!("from={}", "a".repeat(256));
    check("POST", up, Some(&long), None, &Want::Err(BadParameters));
    let ok255 = format!("from={}", "a".repeat(255));
    assert!(matches!(
        classify("POST", up, Some(&ok255), None),
        Ok(Target::Repository(RepoRequest {
            mount_from: Some(_),
            ..
        }))
    ));
    let many = vec!["x=1"; MAX_QUERY_PARAMS].join("&");
    check(
        "POST",
        up,
        Some(&many),
        None,
        &Want::Repo(BlobUpload, "mine", Push),
    );
    let too_many = format!("{many}&from=secret");
    check("POST", up, Some(&too_many), None, &Want::Err(BadParameters));
}

#[test]
fn form_bodies_are_refused() {
    let up = "/v2/mine/blobs/uploads/";
    #[rustfmt::skip]
    let refused: &[&[u8]] = &[
        b"application/x-www-form-urlencoded",
        b"Application/X-WWW-Form-Urlencoded",
        b"application/x-www-form-urlencoded; charset=utf-8",
        b"application/x-www-form-urlencoded;",
        b"application/x-www-form-urlencoded; =bad",
        b"  application/x-www-form-urlencoded  ",
        b"\tapplication/x-www-form-urlencoded",
        b"multipart/form-data; boundary=x",
        b"MULTIPART/FORM-DATA",
        b"multipart/mixed; boundary=x",
        // Bytes Go's trimming and lower-casing may treat otherwise.
        b"\xc2\xa0application/x-www-form-urlencoded",
        b"application/x-www-form-urlencoded\x0b",
        b"application/x-www-form-urlencoded\r",
        b"\xe2\x80\x80multipart/form-data",
        b"text/plain\x00",
    ];
    for ct in refused {
        for method in ["POST", "PUT", "PATCH", "GET"] {
            check(
                method,
                up,
                Some("mount=d&from=x"),
                Some(ct),
                &Want::Err(BadParameters),
            );
        }
        check(
            "PUT",
            "/v2/mine/manifests/x",
            None,
            Some(ct),
            &Want::Err(BadParameters),
        );
    }
    #[rustfmt::skip]
    let fine: &[&[u8]] = &[
        b"application/octet-stream",
        b"",
        b"application/vnd.oci.image.manifest.v1+json",
        b"application/vnd.docker.distribution.manifest.v2+json; charset=utf-8",
        b"application/x-www-form-urlencodedx",
        b"text/x-www-form-urlencoded",
    ];
    for ct in fine {
        check(
            "POST",
            up,
            Some("mount=d&from=x"),
            Some(ct),
            &Want::Mount(BlobUpload, "mine", "x"),
        );
    }
}

#[test]
fn needs_list_every_permission() {
    fn need(t: &Target) -> Vec<(Option<&str>, Action)> {
        t.needs().collect()
    }
    assert_eq!(need(&Target::Base), []);
    assert_eq!(need(&Target::Catalog), [(None, Action::Catalog)]);
    let t = classify("PUT", "/v2/a/b/manifests/x", None, None).unwrap();
    assert_eq!(need(&t), [(Some("a/b"), Push)]);
    assert_eq!(t.repository(), Some("a/b"));
    let t = classify(
        "POST",
        "/v2/a/blobs/uploads/",
        Some("mount=d&from=c/d"),
        None,
    )
    .unwrap();
    assert_eq!(need(&t), [(Some("a"), Push), (Some("c/d"), Pull)]);
    assert_eq!(Target::Catalog.repository(), None);
}

#[test]
fn names_and_statuses() {
    for a in Action::ALL {
        assert_eq!(Action::from_name(a.as_str()), Some(a));
        assert_eq!(a.to_string(), a.as_str());
    }
    assert_eq!(Action::from_name("Pull"), None);
    assert_eq!(Action::from_name("*"), None);
    assert_eq!(NotFound.status(), 404);
    assert_eq!(BadPath.status(), 400);
    assert_eq!(NameInvalid.status(), 400);
    assert_eq!(BadParameters.status(), 400);
    assert_eq!(MethodNotAllowed.status(), 405);
    assert_eq!(BlobUploadChunk.as_str(), "blob-upload-chunk");
    assert_eq!(Tags.as_str(), "tags");
    assert_eq!(Referrers.as_str(), "referrers");
    assert!(!NotFound.to_string().is_empty());
}

/// Every path built from tricky pieces is classified as the registry's own
/// router would route it; the only difference allowed is refusing names
/// whose first component is host-like, which the registry accepts.
#[test]
fn agrees_with_the_registry_router() {
    let reg = Registry28::new();
    let segments = [
        "a",
        "library",
        "a.b",
        "a..b",
        "a-b",
        "a--b",
        "a_b",
        "a__b",
        "a___b",
        "A",
        "Abc",
        "x-Y",
        "localhost:5000",
        "example.com",
        "Example.com",
        "ex-.com",
        "[::1]",
        "_catalog",
        "manifests",
        "blobs",
        "uploads",
        "tags",
        "list",
        "referrers",
        "-a",
        "a-",
        "0",
        "v2",
        ".",
        "..",
        "",
        "a:b",
        "a.",
        "_",
    ];
    let tails = [
        "/tags/list".to_owned(),
        "/tags/list/".to_owned(),
        "/manifests/latest".to_owned(),
        "/manifests/Latest_1.0-x".to_owned(),
        format!("/manifests/{D}"),
        "/manifests/sha256:XYZ".to_owned(),
        "/manifests/".to_owned(),
        "/manifests/.x".to_owned(),
        format!("/referrers/{D}"),
        "/referrers/sha256:XYZ".to_owned(),
        "/referrers/latest".to_owned(),
        "/referrers/".to_owned(),
        "/blobs/sha256:abc".to_owned(),
        "/blobs/sha256:ABC".to_owned(),
        "/blobs/sha256:xyz".to_owned(),
        "/blobs/uploads/".to_owned(),
        "/blobs/uploads".to_owned(),
        "/blobs/uploads/abc-DEF_1.=".to_owned(),
        "/blobs/uploads/a:b".to_owned(),
        "/blobs/uploads/abc/".to_owned(),
        String::new(),
        "/".to_owned(),
    ];
    let mut names = vec![String::new()];
    for a in segments {
        names.push(a.to_owned());
        for b in segments {
            names.push(format!("{a}/{b}"));
            for c in [
                "a",
                "blobs",
                "uploads",
                "manifests",
                "referrers",
                "tags",
                "list",
                "B",
            ] {
                names.push(format!("{a}/{b}/{c}"));
            }
        }
    }
    names.push("a".repeat(255));
    names.push("a".repeat(256));
    names.push(format!("{}/x", "a".repeat(254)));
    let (mut checked, mut routed) = (0, 0);
    for name in &names {
        for tail in &tails {
            let path = format!("/v2/{name}{tail}");
            checked += 1;
            if reference::agrees(&reg, &path) {
                routed += 1;
            }
        }
    }
    assert!(checked > 50_000 && routed > 1_000, "{checked} {routed}");
}

#[test]
fn only_routes_the_registry_reads_a_body_on_say_so() {
    let reads = |method: &str, path: &str, query: Option<&str>| {
        classify(method, path, query, None)
            .map(|t| t.reads_body())
            .unwrap()
    };
    let up = "/v2/a/b/blobs/uploads/";
    let chunk = "/v2/a/b/blobs/uploads/6a0a8a2b-5b5e-4e5f-9b8a-0b9a8e1c2d3f";
    let manifest = "/v2/a/b/manifests/latest";
    let blob = format!("/v2/a/b/blobs/{D}");
    let refs = format!("/v2/a/b/referrers/{D}");
    let digest = format!("digest={D}");
    assert!(reads("PUT", manifest, None));
    assert!(reads("PATCH", chunk, None));
    assert!(reads("PUT", chunk, Some(&digest)));
    assert!(reads("POST", up, Some(&digest)), "monolithic upload");
    for (method, path, query) in [
        ("GET", "/v2/", None),
        ("GET", "/v2/_catalog", None),
        ("GET", manifest, None),
        ("HEAD", manifest, None),
        ("DELETE", manifest, None),
        ("GET", blob.as_str(), None),
        ("DELETE", blob.as_str(), None),
        ("POST", up, None),
        ("POST", up, Some("digest=")),
        ("POST", up, Some("mount=sha256:00&from=c/d")),
        ("GET", chunk, None),
        ("DELETE", chunk, None),
        ("GET", "/v2/a/b/tags/list", None),
        ("GET", refs.as_str(), Some("artifactType=application/x")),
    ] {
        assert!(!reads(method, path, query), "{method} {path} {query:?}");
    }
}

/// The endpoint table of the OCI distribution spec 1.1 ("end-1" to
/// "end-13"), one line per endpoint, with the route it takes and every
/// (repository, action) the rules are asked about. The last three lines
/// are endpoints the spec's main branch added after 1.1 (a digest
/// algorithm on an upload, tags on a manifest PUT, cancelling an upload);
/// they need nothing new. `<blob-push-location>` is the registry's own
/// `/v2/<name>/blobs/uploads/<uuid>`.
#[test]
fn every_endpoint_of_the_spec_table() {
    use RepoRoute::{Blob as B, BlobUpload as Up, BlobUploadChunk as Chunk};
    use RepoRoute::{Manifest as M, Referrers as R, Tags as T};
    const N: Option<&str> = Some("ns/app");
    const SRC: Option<&str> = Some("base/os");
    /// Spec id, method, target, route, and what the rules are asked.
    type Row = (&'static str, &'static str, String, Option<RepoRoute>, Needs);
    type Needs = &'static [(Option<&'static str>, Action)];
    #[rustfmt::skip]
    let rows: [Row; 22] = [
        ("end-1",   "GET",    "/v2/".into(),                                     None,        &[]),
        ("end-2",   "GET",    format!("/v2/ns/app/blobs/{D}"),                   Some(B),     &[(N, Pull)]),
        ("end-2",   "HEAD",   format!("/v2/ns/app/blobs/{D}"),                   Some(B),     &[(N, Pull)]),
        ("end-3",   "GET",    "/v2/ns/app/manifests/v1.0".into(),                Some(M),     &[(N, Pull)]),
        ("end-3",   "HEAD",   format!("/v2/ns/app/manifests/{D}"),               Some(M),     &[(N, Pull)]),
        ("end-4a",  "POST",   "/v2/ns/app/blobs/uploads/".into(),                Some(Up),    &[(N, Push)]),
        ("end-4b",  "POST",   format!("/v2/ns/app/blobs/uploads/?digest={D}"),   Some(Up),    &[(N, Push)]),
        ("end-5",   "PATCH",  "/v2/ns/app/blobs/uploads/5e1c-a9".into(),         Some(Chunk), &[(N, Push)]),
        ("end-6",   "PUT",    format!("/v2/ns/app/blobs/uploads/5e1c-a9?digest={D}"), Some(Chunk), &[(N, Push)]),
        ("end-7",   "PUT",    "/v2/ns/app/manifests/v1.0".into(),                Some(M),     &[(N, Push)]),
        ("end-8a",  "GET",    "/v2/ns/app/tags/list".into(),                     Some(T),     &[(N, Pull)]),
        ("end-8b",  "GET",    "/v2/ns/app/tags/list?n=2&last=v1.0".into(),       Some(T),     &[(N, Pull)]),
        ("end-9",   "DELETE", "/v2/ns/app/manifests/v1.0".into(),                Some(M),     &[(N, Delete)]),
        ("end-9",   "DELETE", format!("/v2/ns/app/manifests/{D}"),               Some(M),     &[(N, Delete)]),
        ("end-10",  "DELETE", format!("/v2/ns/app/blobs/{D}"),                   Some(B),     &[(N, Delete)]),
        ("end-11",  "POST",   format!("/v2/ns/app/blobs/uploads/?mount={D}&from=base/os"), Some(Up), &[(N, Push), (SRC, Pull)]),
        ("end-12a", "GET",    format!("/v2/ns/app/referrers/{D}"),               Some(R),     &[(N, Pull)]),
        ("end-12b", "GET",    format!("/v2/ns/app/referrers/{D}?artifactType=application/vnd.example.sbom.v1"), Some(R), &[(N, Pull)]),
        ("end-13",  "GET",    "/v2/ns/app/blobs/uploads/5e1c-a9".into(),         Some(Chunk), &[(N, Push)]),
        ("end-4c",  "POST",   "/v2/ns/app/blobs/uploads/?digest-algorithm=sha512".into(), Some(Up), &[(N, Push)]),
        ("end-7b",  "PUT",    format!("/v2/ns/app/manifests/{D}?tag=1&tag=2"),   Some(M),     &[(N, Push)]),
        ("end-14",  "DELETE", "/v2/ns/app/blobs/uploads/5e1c-a9".into(),         Some(Chunk), &[(N, Push)]),
    ];
    for (id, method, target, route, needs) in &rows {
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (target.as_str(), None),
        };
        let t = classify(method, path, query, None)
            .unwrap_or_else(|e| panic!("{id} {method} {target}: {e:?}"));
        let got_route = match &t {
            Target::Repository(r) => Some(r.route),
            Target::Base | Target::Catalog => None,
        };
        let got_needs: Vec<_> = t.needs().collect();
        assert_eq!(
            (got_route, got_needs.as_slice()),
            (*route, *needs),
            "{id} {method} {target}"
        );
    }
}

/// A referrers request with a malformed digest is refused exactly as a
/// manifest request with the same digest is, before any rule or credential
/// check, so it never reaches the registry.
#[test]
fn malformed_referrers_digest_is_refused_as_a_manifest_one() {
    for bad in [
        "sha256:",
        ":abc",
        "sha256:ab!c",
        "sha256:abc:def",
        "sha256:ab~c",
        "sha256:ab*c",
        "sha%32:abc",
    ] {
        for method in ["GET", "HEAD", "PUT", "DELETE"] {
            let referrers = classify(method, &format!("/v2/a/b/referrers/{bad}"), None, None);
            let manifest = classify(method, &format!("/v2/a/b/manifests/{bad}"), None, None);
            assert!(referrers.is_err(), "{method} {bad}: {referrers:?}");
            assert_eq!(referrers, manifest, "{method} {bad}");
        }
    }
    assert_eq!(
        classify("GET", "/v2/a/b/referrers/sha256:ab!c", None, None),
        Err(DigestInvalid)
    );
    // Not a digest at all: the spec's 400 on referrers (a 404 would read as
    // "no referrers API"); the registry's 404 on a blob or manifest path.
    assert_eq!(
        classify("GET", "/v2/a/referrers/latest", None, None),
        Err(DigestInvalid)
    );
    assert_eq!(
        classify("GET", "/v2/a/blobs/latest", None, None),
        Err(NotFound)
    );
}

#[test]
fn token_endpoint_is_exactly_token() {
    use super::policy::is_token_endpoint;
    assert!(is_token_endpoint("/token"));
    assert!(is_token_endpoint(
        "/token?service=r&scope=repository:a:pull"
    ));
    assert!(!is_token_endpoint("/token/"));
    assert!(!is_token_endpoint("/tokens"));
    assert!(!is_token_endpoint("/v2/token"));
    assert!(!is_token_endpoint("//token"));
}
