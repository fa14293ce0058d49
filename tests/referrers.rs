//! OCI 1.1 artifacts through regproxy: the referrers API (`GET
//! /v2/<name>/referrers/<digest>`, with or without `artifactType`) is
//! forwarded as a pull of `<name>`, its query and the answer's headers
//! unchanged; `OCI-Subject` on a manifest PUT's 201 passes; the tags list
//! keeps `n` and `last`. Debian's registry 2.8 has no referrers API, so a
//! fake origin plays an OCI 1.1 registry here, recording what reached it.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use support::http::{self, assert_registry_error, RawResponse};
use support::origin::{self, Origin, Request, Step};
use support::proxy::Proxy;

/// May pull and push `sig/app`.
const ALICE: (&str, &str) = ("alice", "alice-pw");
/// May pull `other/**` only.
const EVE: (&str, &str) = ("eve", "eve-pw");
const REPO: &str = "sig/app";
/// The subject manifest whose referrers are listed.
const SUBJECT: &str = "sha256:6c3c624b58dbbcd3c0dd82b4c53f04194d1247c6eebdaab7c610cf7d66709b3b";
const SIGNATURE: &str = "sha256:a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1";
const INDEX_TYPE: &str = "application/vnd.oci.image.index.v1+json";
const WAIT: Duration = Duration::from_secs(10);

/// The referrers index the origin serves, as the spec's example has it.
fn index_body() -> String {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{INDEX_TYPE}","manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","size":1234,"digest":"{SIGNATURE}","artifactType":"application/vnd.dev.cosign.artifact.sig.v1+json","annotations":{{"org.opencontainers.image.created":"2026-01-01T14:42:55Z"}}}}]}}"#
    )
}

/// The next page of the referrers list, as a registry would link it.
fn referrers_link() -> String {
    format!("</v2/{REPO}/referrers/{SUBJECT}?n=1&last={SIGNATURE}>; rel=\"next\"")
}

fn tags_link() -> String {
    format!("</v2/{REPO}/tags/list?n=2&last=b>; rel=\"next\"")
}

/// An OCI 1.1 registry, as far as these tests ask: a referrers index (with
/// `OCI-Filters-Applied` when filtered), a 201 with `OCI-Subject` for a
/// manifest PUT, a tags page, and `{}` for anything else.
fn answer(req: &Request) -> Vec<Step> {
    let (path, query) = match req.target.split_once('?') {
        Some((p, q)) => (p, q),
        None => (req.target.as_str(), ""),
    };
    let bytes = if path.contains("/referrers/") {
        let link = referrers_link();
        let mut headers = vec![("Content-Type", INDEX_TYPE), ("Link", link.as_str())];
        if query.split('&').any(|p| p.starts_with("artifactType=")) {
            headers.push(("OCI-Filters-Applied", "artifactType"));
        }
        origin::response(200, &headers, index_body().as_bytes())
    } else if req.method == "PUT" && path.contains("/manifests/") {
        let location = format!("/v2/{REPO}/manifests/{SIGNATURE}");
        origin::response(
            201,
            &[
                ("Location", &location),
                ("Docker-Content-Digest", SIGNATURE),
                ("OCI-Subject", SUBJECT),
            ],
            b"",
        )
    } else if path.ends_with("/tags/list") {
        let link = tags_link();
        let body = format!(r#"{{"name":"{REPO}","tags":["a","b"]}}"#);
        origin::response(
            200,
            &[("Content-Type", "application/json"), ("Link", &link)],
            body.as_bytes(),
        )
    } else {
        origin::response(200, &[("Content-Type", "application/json")], b"{}")
    };
    vec![Step::Write(bytes)]
}

/// The fake OCI 1.1 registry and a plain-HTTP regproxy in front of it,
/// with rules and a JSON access log.
struct Front {
    _dir: tempfile::TempDir,
    origin: Origin,
    proxy: Proxy,
}

impl Front {
    fn start() -> Front {
        let dir = tempfile::tempdir().unwrap();
        let origin = Origin::start(answer);
        support::write_htpasswd(&dir.path().join("users"), &[ALICE, EVE]);
        let config = format!(
            "listen = \"127.0.0.1:0\"\n\
             [auth]\nhtpasswd = \"users\"\n\
             [upstream]\nservers = [\"{}\"]\n\
             [log]\nformat = \"json\"\n\
             [[access]]\nrepository = \"{REPO}\"\nwho = [\"alice\"]\nactions = [\"pull\", \"push\"]\n\
             [[access]]\nrepository = \"other/**\"\nwho = [\"eve\"]\nactions = [\"pull\"]\n",
            origin.addr()
        );
        let proxy = Proxy::start(&config, dir.path());
        Front {
            _dir: dir,
            origin,
            proxy,
        }
    }

    fn call(&self, user: Option<(&str, &str)>, method: &str, target: &str) -> RawResponse {
        self.call_with(user, method, target, &[], b"")
    }

    fn call_with(
        &self,
        user: Option<(&str, &str)>,
        method: &str,
        target: &str,
        extra: &[(&str, &str)],
        body: &[u8],
    ) -> RawResponse {
        http::request(self.proxy.addr(), method, target, user, extra, body).unwrap()
    }

    /// The targets that reached the origin from the `seen`-th request on,
    /// once a marker request sent now has arrived: a refused request was
    /// answered before the marker was sent, so had it been forwarded, it
    /// would be listed before it.
    fn reached_since(&self, seen: usize) -> Vec<String> {
        let r = self.call(Some(ALICE), "GET", "/v2/");
        assert_eq!(r.status, 200, "marker: {r:?}");
        let all = wait_for_marker(&self.origin, seen);
        let (last, before) = all.split_last().unwrap();
        assert_eq!(last, "GET /v2/", "the marker is the last request");
        before.to_vec()
    }
}

/// Every "METHOD target" from the `seen`-th on, once the last is the marker.
fn wait_for_marker(origin: &Origin, seen: usize) -> Vec<String> {
    let lines = |reqs: Vec<Request>| -> Vec<String> {
        reqs.iter()
            .skip(seen)
            .map(|r| format!("{} {}", r.method, r.target))
            .collect()
    };
    support::wait_for(WAIT, || {
        let l = lines(origin.requests());
        (l.last().map(String::as_str) == Some("GET /v2/")).then_some(l)
    })
    .unwrap_or_else(|| lines(origin.requests()))
}

/// `name: value` exactly as given (name spelling included) in `r`'s head.
fn has_field(r: &RawResponse, name: &str, value: &str) -> bool {
    r.headers.iter().any(|(k, v)| k == name && v == value)
}

#[test]
fn an_allowed_user_gets_the_referrers_index_and_its_headers_unchanged() {
    let f = Front::start();
    let target = format!("/v2/{REPO}/referrers/{SUBJECT}");
    let r = f.call(Some(ALICE), "GET", &target);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body, index_body().as_bytes(), "the index, byte for byte");
    assert!(has_field(&r, "Content-Type", INDEX_TYPE), "{r:?}");
    assert!(has_field(&r, "Link", &referrers_link()), "{r:?}");
    assert!(
        r.header("oci-filters-applied").is_none(),
        "unfiltered: {r:?}"
    );

    let filtered = format!("{target}?artifactType=application/vnd.dev.cosign.artifact.sig.v1+json");
    let r = f.call(Some(ALICE), "GET", &filtered);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body, index_body().as_bytes());
    assert!(has_field(&r, "Content-Type", INDEX_TYPE), "{r:?}");
    assert!(has_field(&r, "Link", &referrers_link()), "{r:?}");
    assert!(
        has_field(&r, "OCI-Filters-Applied", "artifactType"),
        "{r:?}"
    );

    // The access log calls each a pull of the repository, naming the subject.
    let lines = f.proxy.wait_for_access_lines(2, WAIT);
    assert_eq!(lines.len(), 2, "{lines:?}");
    for line in lines {
        let line: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(line["path"], target, "{line}");
        assert_eq!(line["action"], "pull", "{line}");
        assert_eq!(line["repository"], REPO, "{line}");
        assert_eq!(line["digest"], SUBJECT, "{line}");
        assert_eq!(line["user"], "alice", "{line}");
        assert_eq!(line["status"], 200, "{line}");
    }
}

#[test]
fn the_artifact_type_query_reaches_the_registry_unchanged() {
    let f = Front::start();
    let base = format!("/v2/{REPO}/referrers/{SUBJECT}");
    let queries = [
        "artifactType=application/vnd.dev.cosign.artifact.sig.v1+json",
        "artifactType=application%2Fvnd.example.sbom.v1",
        "artifactType=application/spdx%2Bjson&n=10",
        "n=1&last=sha256:a1a1&artifactType=application/vnd.cncf.notary.signature",
        "artifactType=",
    ];
    for q in queries {
        let r = f.call(Some(ALICE), "GET", &format!("{base}?{q}"));
        assert_eq!(r.status, 200, "{q}: {r:?}");
    }
    let got: Vec<String> = f
        .origin
        .wait_requests(queries.len(), WAIT)
        .into_iter()
        .map(|r| format!("{} {}", r.method, r.target))
        .collect();
    let want: Vec<String> = queries.iter().map(|q| format!("GET {base}?{q}")).collect();
    assert_eq!(got, want);
}

#[test]
fn a_user_without_pull_gets_403_and_nothing_reaches_the_registry() {
    let f = Front::start();
    let seen = f.origin.requests().len();
    for target in [
        format!("/v2/{REPO}/referrers/{SUBJECT}"),
        format!("/v2/{REPO}/referrers/{SUBJECT}?artifactType=application/x"),
    ] {
        let r = f.call(Some(EVE), "GET", &target);
        assert_registry_error(&r, 403, "DENIED", &target);
        // Without credentials: the challenge, as for any pull a rule grants.
        let r = f.call(None, "GET", &target);
        assert_registry_error(&r, 401, "UNAUTHORIZED", &target);
        assert!(r.header("www-authenticate").is_some(), "{r:?}");
    }
    // eve may pull what her rule names: the refusal is the rules' doing.
    let r = f.call(
        Some(EVE),
        "GET",
        &format!("/v2/other/app/referrers/{SUBJECT}"),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        f.reached_since(seen),
        vec![format!("GET /v2/other/app/referrers/{SUBJECT}")]
    );
}

#[test]
fn a_malformed_digest_is_refused_as_on_a_manifest_and_never_forwarded() {
    let f = Front::start();
    let seen = f.origin.requests().len();
    for bad in ["sha256:ab!c", "sha256:", ":abc", "sha256:abc:def"] {
        let referrers = f.call(Some(ALICE), "GET", &format!("/v2/{REPO}/referrers/{bad}"));
        let manifest = f.call(Some(ALICE), "GET", &format!("/v2/{REPO}/manifests/{bad}"));
        let code = |r: &RawResponse| {
            let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            v["errors"][0]["code"].as_str().unwrap().to_owned()
        };
        assert_eq!(
            (referrers.status, code(&referrers)),
            (manifest.status, code(&manifest)),
            "{bad}"
        );
        assert_registry_error(&referrers, 400, "DIGEST_INVALID", bad);
    }
    // A tag is no digest here (the spec's 400: a 404 would tell the client
    // there is no referrers API), and the spec defines GET only.
    let r = f.call(Some(ALICE), "GET", &format!("/v2/{REPO}/referrers/latest"));
    assert_registry_error(&r, 400, "DIGEST_INVALID", "a tag");
    let r = f.call(
        Some(ALICE),
        "HEAD",
        &format!("/v2/{REPO}/referrers/{SUBJECT}"),
    );
    assert_eq!(r.status, 405, "{r:?}");
    assert_eq!(f.reached_since(seen), Vec::<String>::new());
}

#[test]
fn oci_subject_on_a_manifest_put_passes_through() {
    let f = Front::start();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/vnd.dev.cosign.artifact.sig.v1+json","config":{{"mediaType":"application/vnd.oci.empty.v1+json","size":2,"digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"}},"layers":[],"subject":{{"mediaType":"application/vnd.oci.image.manifest.v1+json","size":7023,"digest":"{SUBJECT}"}}}}"#
    );
    let r = f.call_with(
        Some(ALICE),
        "PUT",
        &format!("/v2/{REPO}/manifests/{SIGNATURE}"),
        &[("Content-Type", "application/vnd.oci.image.manifest.v1+json")],
        manifest.as_bytes(),
    );
    assert_eq!(r.status, 201, "{r:?}");
    assert!(has_field(&r, "OCI-Subject", SUBJECT), "{r:?}");
    assert!(has_field(&r, "Docker-Content-Digest", SIGNATURE), "{r:?}");
    let reqs = f.origin.wait_requests(1, WAIT);
    assert_eq!(reqs[0].body, manifest.as_bytes());
}

#[test]
fn the_tags_list_keeps_n_and_last() {
    let f = Front::start();
    for q in ["n=2&last=a", "n=2", "last=a", "n=0&last=v1.0-rc_1"] {
        let r = f.call(Some(ALICE), "GET", &format!("/v2/{REPO}/tags/list?{q}"));
        assert_eq!(r.status, 200, "{q}: {r:?}");
        assert!(has_field(&r, "Link", &tags_link()), "{r:?}");
    }
    let got: Vec<String> = f
        .origin
        .wait_requests(4, WAIT)
        .into_iter()
        .map(|r| r.target)
        .collect();
    assert_eq!(
        got,
        [
            format!("/v2/{REPO}/tags/list?n=2&last=a"),
            format!("/v2/{REPO}/tags/list?n=2"),
            format!("/v2/{REPO}/tags/list?last=a"),
            format!("/v2/{REPO}/tags/list?n=0&last=v1.0-rc_1"),
        ]
    );
}
