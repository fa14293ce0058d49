//! Which registry endpoint a request path names (OCI distribution spec,
//! "Endpoints"), and the query parameters the origin reads. Pure, so the
//! server loop stays I/O only.

use crate::registry::valid_repo;

/// A registry endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route<'a> {
    /// `/v2/`
    Ping,
    /// `/v2/<name>/manifests/<reference>`
    Manifest {
        name: &'a str,
        reference: &'a str,
    },
    /// `/v2/<name>/blobs/<digest>`
    Blob {
        name: &'a str,
        digest: &'a str,
    },
    /// `/v2/<name>/blobs/uploads/`
    UploadStart {
        name: &'a str,
    },
    /// `/v2/<name>/blobs/uploads/<id>`
    Upload {
        name: &'a str,
        id: &'a str,
    },
    NotFound,
}

/// Splits `path` (without the query) into a route.
pub fn route(path: &str) -> Route<'_> {
    let Some(rest) = path.strip_prefix("/v2") else {
        return Route::NotFound;
    };
    if rest.is_empty() || rest == "/" {
        return Route::Ping;
    }
    let Some(rest) = rest.strip_prefix('/') else {
        return Route::NotFound;
    };
    // The name may itself contain slashes: find the endpoint keyword from
    // the right, as the registry's router does.
    if let Some(i) = rest.rfind("/blobs/uploads") {
        let (name, tail) = (&rest[..i], &rest[i + "/blobs/uploads".len()..]);
        if valid_repo(name) {
            return match tail {
                "" | "/" => Route::UploadStart { name },
                t => match t.strip_prefix('/') {
                    Some(id) if !id.is_empty() && !id.contains('/') => Route::Upload { name, id },
                    _ => Route::NotFound,
                },
            };
        }
    }
    for (keyword, manifest) in [("/manifests/", true), ("/blobs/", false)] {
        if let Some(i) = rest.rfind(keyword) {
            let (name, reference) = (&rest[..i], &rest[i + keyword.len()..]);
            if valid_repo(name) && !reference.is_empty() && !reference.contains('/') {
                return if manifest {
                    Route::Manifest { name, reference }
                } else {
                    Route::Blob {
                        name,
                        digest: reference,
                    }
                };
            }
        }
    }
    Route::NotFound
}

/// The value of `key` in a query string, percent-decoded (clients send
/// `digest=sha256%3A...` as often as `digest=sha256:...`).
pub fn query_param(query: Option<&str>, key: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == key).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                let v = hex(h).unwrap_or_default() * 16 + hex(l).unwrap_or_default();
                out.push(v as u8);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route("/v2/"), Route::Ping);
        assert_eq!(route("/v2"), Route::Ping);
        assert_eq!(
            route("/v2/a/b/manifests/1x5"),
            Route::Manifest {
                name: "a/b",
                reference: "1x5"
            }
        );
        assert_eq!(
            route("/v2/a/blobs/sha256:00"),
            Route::Blob {
                name: "a",
                digest: "sha256:00"
            }
        );
        assert_eq!(
            route("/v2/a/b/blobs/uploads/"),
            Route::UploadStart { name: "a/b" }
        );
        assert_eq!(
            route("/v2/a/blobs/uploads"),
            Route::UploadStart { name: "a" }
        );
        assert_eq!(
            route("/v2/a/blobs/uploads/u-1"),
            Route::Upload {
                name: "a",
                id: "u-1"
            }
        );
        // A repository may be called "blobs" or "manifests".
        assert_eq!(
            route("/v2/x/blobs/manifests/t"),
            Route::Manifest {
                name: "x/blobs",
                reference: "t"
            }
        );
        for nf in [
            "/",
            "/v1/",
            "/v2x",
            "/v2/A/manifests/t",
            "/v2/a/manifests/",
            "/v2/a/blobs/uploads/u/v",
            "/v2/a/tags/list",
        ] {
            assert_eq!(route(nf), Route::NotFound, "{nf}");
        }
    }

    #[test]
    fn queries() {
        let q = Some("_n=12&digest=sha256%3Aab&flag");
        assert_eq!(query_param(q, "digest").as_deref(), Some("sha256:ab"));
        assert_eq!(query_param(q, "_n").as_deref(), Some("12"));
        assert_eq!(query_param(q, "flag").as_deref(), Some(""));
        assert_eq!(query_param(q, "x"), None);
        assert_eq!(query_param(None, "x"), None);
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("a+b%41"), "a bA");
    }
}
