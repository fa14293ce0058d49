//! A reference model of registry 2.8's router, compiled from the
//! registry's own regular expressions, plus the referrers route of the OCI
//! distribution spec 1.1 (which 2.8 lacks) as a registry serving it routes
//! it. `classify` is checked against it: the unit tests walk a grid of
//! names with it and the `route` fuzz target (fuzz/, through the `fuzzing`
//! feature) walks arbitrary paths. Not part of the proxy: it is compiled
//! only for those two.

use super::{classify, is_path_component, RepoRoute, RouteError, Target, MAX_NAME_LEN};

/// The registry 2.8 routes (`registry/api/v2/descriptors.go` with
/// `reference/regexp.go` and go-digest's `DigestRegexp`), as gorilla/mux
/// compiles them: each variable a named group, anchored, first route in
/// registration order wins. Trailing-slash variants only redirect there,
/// so they are not modelled as routes. The referrers route is the spec's
/// `/v2/<name>/referrers/<digest>` with the same name and digest grammar,
/// as a distribution that served it would register it.
#[derive(Debug)]
pub struct Registry28 {
    routes: Vec<(&'static str, regex_automata::meta::Regex)>,
}

impl Registry28 {
    pub fn new() -> Self {
        let alnum = "[a-z0-9]+";
        let sep = "(?:[._]|__|[-]*)";
        let component = format!("{alnum}(?:(?:{sep}{alnum})+)?");
        let domain_component = "(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
        let domain = format!("{domain_component}(?:(?:\\.{domain_component})+)?(?::[0-9]+)?");
        let name = format!("(?:{domain}/)?{component}(?:(?:/{component})+)?");
        // Go's \w is ASCII; spelled out so no Unicode class sneaks in.
        let tag = "[0-9A-Za-z_][0-9A-Za-z_.-]{0,127}";
        let digest = "[a-zA-Z0-9_+.-]+:[a-fA-F0-9]+";
        let uuid = "[a-zA-Z0-9_.=-]+";
        let routes = [
            ("base", "^/v2/$".to_owned()),
            ("tags", format!("^/v2/(?P<name>{name})/tags/list$")),
            (
                "manifest",
                format!("^/v2/(?P<name>{name})/manifests/(?:{tag}|{digest})$"),
            ),
            (
                "referrers",
                format!("^/v2/(?P<name>{name})/referrers/{digest}$"),
            ),
            ("blob", format!("^/v2/(?P<name>{name})/blobs/{digest}$")),
            (
                "blob-upload",
                format!("^/v2/(?P<name>{name})/blobs/uploads/$"),
            ),
            (
                "blob-upload-chunk",
                format!("^/v2/(?P<name>{name})/blobs/uploads/{uuid}$"),
            ),
            ("catalog", "^/v2/_catalog$".to_owned()),
        ];
        Registry28 {
            routes: routes
                .into_iter()
                .map(|(n, re)| {
                    (
                        n,
                        regex_automata::meta::Regex::new(&re)
                            .expect("the registry's regexps compile"),
                    )
                })
                .collect(),
        }
    }

    /// The route and repository name the registry would serve `path` with,
    /// or `None` for a 404 or a redirect.
    pub fn route(&self, path: &str) -> Option<(&'static str, Option<String>)> {
        // gorilla/mux redirects any path that path.Clean would change.
        if path.contains("//") || path.split('/').any(|s| s == "." || s == "..") {
            return None;
        }
        for (route, re) in &self.routes {
            let mut caps = re.create_captures();
            re.captures(path, &mut caps);
            if caps.is_match() {
                let name = caps
                    .get_group_by_name("name")
                    .map(|s| path[s.range()].to_owned());
                return Some((route, name));
            }
        }
        None
    }
}

impl Default for Registry28 {
    fn default() -> Self {
        Self::new()
    }
}

/// Checks `classify` on a `GET` of `path` against the registry's router and
/// panics, naming the path, where they disagree in a way that matters: a
/// path we route must reach the same route and name there, and a path we
/// refuse may only be one the registry refuses too, or one of the
/// deliberate refusals listed below. Returns whether we routed it.
pub fn agrees(reg: &Registry28, path: &str) -> bool {
    let theirs = reg.route(path);
    let ours = classify("GET", path, None, None);
    match (&ours, &theirs) {
        (Ok(Target::Base), Some(("base", None)))
        | (Ok(Target::Catalog), Some(("catalog", None))) => true,
        (Ok(Target::Repository(r)), Some((route, Some(n)))) => {
            assert_eq!(
                (r.route.as_str(), r.name.as_str()),
                (*route, n.as_str()),
                "{path:?}"
            );
            assert!(r.name.len() <= MAX_NAME_LEN, "{path:?}");
            true
        }
        // A documented extra refusal: a digest the registry would route but
        // then refuse (or, on a manifest, read as a tag and fail with 500).
        (Err(RouteError::DigestInvalid), Some((route, Some(_))))
            if matches!(*route, "blob" | "manifest" | "referrers") =>
        {
            let last = path.rsplit('/').next().unwrap_or_default();
            assert!(last.contains(':'), "{path:?}");
            false
        }
        (Err(RouteError::NameInvalid), Some((_, Some(n)))) => {
            assert!(n.len() > MAX_NAME_LEN, "{path:?}");
            false
        }
        (Err(_), None) => false,
        // Our digest grammar is the union of 2.8's and 3.x's; with a 2.8
        // digest in its place the registry routes the path to the same name.
        (Ok(Target::Repository(r)), None)
            if matches!(
                r.route,
                RepoRoute::Blob | RepoRoute::Manifest | RepoRoute::Referrers
            ) =>
        {
            let head = path.rsplit_once('/').map_or(path, |(h, _)| h);
            let with_hex = format!("{head}/{DIGEST}");
            let again = reg.route(&with_hex);
            assert_eq!(
                again,
                Some((r.route.as_str(), Some(r.name.clone()))),
                "{path:?}"
            );
            true
        }
        (Err(RouteError::NotFound), Some((_, Some(n)))) => {
            // We refuse only the host-like first component.
            let (first, rest) = n.split_once('/').unwrap_or((n, ""));
            assert!(
                !is_path_component(first) && !rest.is_empty(),
                "{path:?}: {n}"
            );
            assert!(rest.split('/').all(is_path_component), "{path:?}");
            false
        }
        _ => panic!("{path:?}: ours {ours:?}, registry {theirs:?}"),
    }
}

/// A registry 2.8 digest, to stand in for one of ours it would not parse.
const DIGEST: &str = "sha256:6c3c624b58dbbcd3c0dd82b4c53f04194d1247c6eebdaab7c610cf7d66709b3b";
