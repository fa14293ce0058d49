use std::collections::BTreeMap;
use std::io;

use super::*;

/// Files in memory, for includes and globs.
struct Mem(BTreeMap<PathBuf, String>);

impl Mem {
    fn new(files: &[(&str, &str)]) -> Mem {
        Mem(files
            .iter()
            .map(|(p, t)| (PathBuf::from(p), (*t).to_owned()))
            .collect())
    }
}

impl Source for Mem {
    fn read(&self, path: &Path) -> io::Result<String> {
        self.0
            .get(path)
            .cloned()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        Ok(self
            .0
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect())
    }
}

fn parse(text: &str) -> Vec<Directive> {
    parse_str(text, Path::new("t.conf")).expect("parses")
}

fn parse_err(text: &str) -> String {
    parse_str(text, Path::new("t.conf"))
        .expect_err("refused")
        .to_string()
}

fn names(ds: &[Directive]) -> Vec<(&str, usize)> {
    ds.iter().map(|d| (d.name.as_str(), d.line)).collect()
}

#[test]
fn blocks_args_and_lines() {
    let t = parse(
        "events {\n  worker_connections 1024;\n}\n\nhttp {\n  server { listen 443 ssl; }\n}\n",
    );
    assert_eq!(names(&t), vec![("events", 1), ("http", 5)]);
    assert_eq!(t[0].children()[0].args, vec!["1024"]);
    assert_eq!(t[0].children()[0].line, 2);
    let server = &t[1].children()[0];
    assert_eq!(server.name, "server");
    assert_eq!(server.children()[0].args, vec!["443", "ssl"]);
    assert_eq!(server.children()[0].line, 6);
    assert_eq!(server.children()[0].at(), "t.conf:6");
}

#[test]
fn comments_only_where_a_word_starts() {
    let t = parse("a b#c; # comment ; {\n d 'x # y'; # e;\n");
    assert_eq!(t[0].args, vec!["b#c"]);
    assert_eq!(t[1].name, "d");
    assert_eq!(t[1].args, vec!["x # y"]);
    assert_eq!(t.len(), 2);
}

#[test]
fn quotes_and_escapes_as_nginx() {
    let t = parse(r#"a "x \"y\" \\ \t" 'it\'s' "re\.\/\d";"#);
    assert_eq!(t[0].args, vec!["x \"y\" \\ \t", "it's", r"re\.\/\d"]);
    // Quotes inside a bare word are just characters; a backslash keeps a
    // separator in the word (and itself, as nginx does).
    let t = parse(r#"a b"c d\ e;"#);
    assert_eq!(t[0].args, vec!["b\"c", r"d\ e"]);
    // A quoted word may hold a newline, and lines keep counting.
    let t = parse("a 'x\ny';\nb;");
    assert_eq!(t[0].args, vec!["x\ny"]);
    assert_eq!(t[1].line, 3);
}

#[test]
fn variables_with_braces_are_not_blocks() {
    let t = parse("set $x \"${a}b\"; set $y ${a}c;");
    assert_eq!(t[0].args, vec!["$x", "${a}b"]);
    assert_eq!(t[1].args, vec!["$y", "${a}c"]);
}

#[test]
fn the_recipe_user_agent_if() {
    let t = parse(
        r#"location /v2/ {
  if ($http_user_agent ~ "^(docker\/1\.(3|4|5(?!\.[0-9]-dev))|Go ).*$" ) {
    return 404;
  }
}"#,
    );
    let iff = &t[0].children()[0];
    assert_eq!(iff.name, "if");
    assert_eq!(
        iff.args,
        vec![
            "($http_user_agent",
            "~",
            r"^(docker\/1\.(3|4|5(?!\.[0-9]-dev))|Go ).*$",
            ")"
        ]
    );
    assert_eq!(iff.children()[0].args, vec!["404"]);
    // `"re")` without a space is allowed too.
    let t = parse(r#"if ($a ~ "b") { return 403; }"#);
    assert_eq!(t[0].args, vec!["($a", "~", "b", ")"]);
}

#[test]
fn errors_name_file_and_line() {
    assert_eq!(
        parse_err("a {\n b;\n"),
        "t.conf:3: unexpected end of file, expecting \"}\""
    );
    assert_eq!(parse_err("a;\n}\n"), "t.conf:2: unexpected \"}\"");
    assert_eq!(
        parse_err("a b\n"),
        "t.conf:2: unexpected end of file, expecting \";\" or \"}\""
    );
    assert_eq!(parse_err("\n\n;"), "t.conf:3: unexpected \";\"");
    assert_eq!(
        parse_err("x {\n a b }"),
        "t.conf:2: directive is not terminated by \";\""
    );
    assert_eq!(parse_err("a 'b;\n\n"), "t.conf:1: unterminated ' string");
    assert_eq!(
        parse_err("a \"b\"c;"),
        "t.conf:1: unexpected \"c\" after a quoted string"
    );
    assert!(parse_err(&"a{".repeat(100)).contains("nested too deep"));
}

#[test]
fn includes_expand_in_place_with_their_own_file_and_line() {
    let src = Mem::new(&[
        (
            "/etc/nginx/nginx.conf",
            "http {\n  include conf.d/*.conf;\n  include snippets/one.conf;\n}\n",
        ),
        ("/etc/nginx/conf.d/b.conf", "b_dir;\n"),
        ("/etc/nginx/conf.d/a.conf", "\n\na_dir;\n"),
        ("/etc/nginx/conf.d/.hidden.conf", "hidden;\n"),
        ("/etc/nginx/conf.d/c.txt", "c_dir;\n"),
        // Nested includes resolve against the main file's folder, as nginx does.
        (
            "/etc/nginx/snippets/one.conf",
            "include snippets/two.conf;\n",
        ),
        ("/etc/nginx/snippets/two.conf", "two;\n"),
    ]);
    let t = load(&src, Path::new("/etc/nginx/nginx.conf")).expect("loads");
    let http = t[0].children();
    assert_eq!(names(http), vec![("a_dir", 3), ("b_dir", 1), ("two", 1)]);
    assert_eq!(http[0].at(), "/etc/nginx/conf.d/a.conf:3");
    assert_eq!(http[2].at(), "/etc/nginx/snippets/two.conf:1");
}

#[test]
fn include_problems_point_at_the_include() {
    let src = Mem::new(&[
        ("/n/nginx.conf", "a;\ninclude missing.conf;\n"),
        ("/n/glob.conf", "include none/*.conf;\n"),
        ("/n/loop.conf", "include loop.conf;\n"),
        ("/n/bad.conf", "include broken.conf;\n"),
        ("/n/broken.conf", "\nx {\n"),
    ]);
    let e = load(&src, Path::new("/n/nginx.conf")).expect_err("missing");
    assert!(
        e.to_string()
            .starts_with("/n/nginx.conf:2: include missing.conf: /n/missing.conf:"),
        "{e}"
    );
    // A glob that matches nothing is fine, as in nginx.
    assert_eq!(
        load(&src, Path::new("/n/glob.conf")).expect("empty glob"),
        vec![]
    );
    let e = load(&src, Path::new("/n/none.conf")).expect_err("no main file");
    assert!(
        e.to_string().starts_with("/n/none.conf: cannot read: "),
        "{e}"
    );
    let e = load(&src, Path::new("/n/loop.conf")).expect_err("loop");
    assert!(e.to_string().contains("nested deeper"), "{e}");
    let e = load(&src, Path::new("/n/bad.conf")).expect_err("broken");
    assert_eq!(
        e.to_string(),
        "/n/broken.conf:3: unexpected end of file, expecting \"}\""
    );
}

#[test]
fn wildcards() {
    assert!(wildcard_match(b"*.conf", b"a.conf"));
    assert!(!wildcard_match(b"*.conf", b"a.conf.bak"));
    assert!(wildcard_match(b"?.c[a-z]nf", b"x.conf"));
    assert!(!wildcard_match(b"[!x].conf", b"x.conf"));
    assert!(wildcard_match(b"[]x].conf", b"].conf"));
    assert!(wildcard_match(b"a*b*c", b"aXXbYYc"));
}
