//! A reference model of registry 2.8's router, compiled from the
//! registry's own regular expressions, to check `classify` against.

/// The registry 2.8 routes (`registry/api/v2/descriptors.go` with
/// `reference/regexp.go` and go-digest's `DigestRegexp`), as gorilla/mux
/// compiles them: each variable a named group, anchored, first route in
/// registration order wins. Trailing-slash variants only redirect there,
/// so they are not modelled as routes.
pub(super) struct Registry28 {
    routes: Vec<(&'static str, regex_automata::meta::Regex)>,
}

impl Registry28 {
    pub(super) fn new() -> Self {
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
                .map(|(n, re)| (n, regex_automata::meta::Regex::new(&re).unwrap()))
                .collect(),
        }
    }

    /// The route and repository name the registry would serve `path` with,
    /// or `None` for a 404 or a redirect.
    pub(super) fn route(&self, path: &str) -> Option<(&'static str, Option<String>)> {
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
