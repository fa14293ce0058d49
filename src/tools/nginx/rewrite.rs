//! A small evaluator of nginx's rewrite phase (`set`, `if`, `return`,
//! `map`), so `import-nginx` can tell what a location's push restriction
//! does instead of pattern-matching one spelling of it.
//!
//! Pipeline role: [`super::convert`] hands over the location's `set`/`if`
//! statements and the `map`s, then asks, for every request method and user
//! that matters, whether the request passes or gets a `return CODE`. Any
//! variable it cannot know (a header, the client address), any condition it
//! does not model (`-f`, lookbehind regexes) makes the answer
//! [`Outcome::Unknown`] with the reason, and the converter reports the
//! directives as not converted rather than guessing.
//!
//! Semantics follow `ngx_http_rewrite_module` and `ngx_http_map_module`:
//! `if ($v)` is false for "" and "0"; `=`/`!=` compare exactly; `~`, `~*`,
//! `!~`, `!~*` are (case-insensitive) regex searches; the first matching
//! `if` with a `return` ends the phase; map string keys match ignoring
//! case, then regex keys in order, then `default` (empty when absent).

use std::collections::BTreeMap;

use regex_automata::meta::Regex;
use regex_automata::util::syntax;

use super::Directive;

/// What the rewrite phase does with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Outcome {
    Pass,
    Return(u16),
    Unknown(String),
}

/// A `map` block, parsed.
#[derive(Debug, Clone)]
pub(super) struct Map {
    /// The source value, e.g. `$remote_user` or `$request_method:$u`.
    pub source: String,
    default: String,
    exact: Vec<(String, String)>,
    regex: Vec<(Regex, String)>,
    /// Why the map cannot be evaluated, if it cannot.
    unsupported: Option<String>,
}

impl Map {
    /// Reads `map SOURCE $VAR { … }`; returns the variable name (without
    /// `$`) and the map.
    pub(super) fn parse(d: &Directive) -> Option<(String, Map)> {
        let [source, var] = d.args.as_slice() else {
            return None;
        };
        let var = var.strip_prefix('$')?.to_owned();
        let mut map = Map {
            source: source.clone(),
            default: String::new(),
            exact: Vec::new(),
            regex: Vec::new(),
            unsupported: None,
        };
        for e in d.children() {
            let value = e.args.first().cloned().unwrap_or_default();
            match (e.name.as_str(), e.args.len()) {
                ("default", 1) => map.default = value,
                ("volatile", 0) => {}
                ("hostnames", 0) => map.unsupported = Some("map hostnames".into()),
                (key, 1) => {
                    if let Some(re) = key.strip_prefix("~*") {
                        map.push_regex(re, true, value);
                    } else if let Some(re) = key.strip_prefix('~') {
                        map.push_regex(re, false, value);
                    } else {
                        let key = key.strip_prefix('\\').unwrap_or(key);
                        map.exact.push((key.to_owned(), value));
                    }
                }
                _ => map.unsupported = Some(format!("{}:{} unreadable map entry", e.at(), e.name)),
            }
        }
        Some((var, map))
    }

    fn push_regex(&mut self, re: &str, caseless: bool, value: String) {
        match compile(re, caseless) {
            Ok(r) => self.regex.push((r, value)),
            Err(e) => self.unsupported = Some(e),
        }
    }

    /// Exact keys, as written: the users a `$remote_user` map names.
    pub(super) fn keys(&self) -> impl Iterator<Item = &str> {
        self.exact.iter().map(|(k, _)| k.as_str())
    }

    pub(super) fn has_regex(&self) -> bool {
        !self.regex.is_empty()
    }
}

fn compile(re: &str, caseless: bool) -> Result<Regex, String> {
    Regex::builder()
        .syntax(syntax::Config::new().case_insensitive(caseless))
        .build(re)
        .map_err(|e| format!("regex {re:?} is not one regproxy can evaluate ({e})"))
}

/// One request as the rewrite phase sees it.
pub(super) struct Request<'a> {
    pub method: &'a str,
    /// "" for a request without credentials.
    pub user: &'a str,
}

/// Runs `statements` (a location's `set`, `if` and `return`, in order).
pub(super) fn run(
    statements: &[&Directive],
    maps: &BTreeMap<String, Map>,
    req: &Request,
) -> Outcome {
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    match run_block(statements, maps, req, &mut vars) {
        Ok(Some(code)) => Outcome::Return(code),
        Ok(None) => Outcome::Pass,
        Err(why) => Outcome::Unknown(why),
    }
}

fn run_block(
    statements: &[&Directive],
    maps: &BTreeMap<String, Map>,
    req: &Request,
    vars: &mut BTreeMap<String, String>,
) -> Result<Option<u16>, String> {
    for d in statements {
        match d.name.as_str() {
            "set" => {
                let [var, value] = d.args.as_slice() else {
                    return Err(format!("{}: set needs a variable and a value", d.at()));
                };
                let var = var.strip_prefix('$').unwrap_or(var).to_owned();
                let value = expand(value, maps, req, vars, 0)?;
                vars.insert(var, value);
            }
            "return" => {
                let code = d.args.first().and_then(|c| c.parse::<u16>().ok());
                return code
                    .map(Some)
                    .ok_or_else(|| format!("{}: return without a status code", d.at()));
            }
            "if" => {
                if condition(&d.args, maps, req, vars).map_err(|e| format!("{}: {e}", d.at()))? {
                    let inner: Vec<&Directive> = d.children().iter().collect();
                    if let Some(code) = run_block(&inner, maps, req, vars)? {
                        return Ok(Some(code));
                    }
                }
            }
            other => return Err(format!("{}: {other} inside the rewrite phase", d.at())),
        }
    }
    Ok(None)
}

/// An `if` condition's words, parentheses included as the lexer left them.
fn condition(
    args: &[String],
    maps: &BTreeMap<String, Map>,
    req: &Request,
    vars: &BTreeMap<String, String>,
) -> Result<bool, String> {
    let mut words: Vec<&str> = args.iter().map(String::as_str).collect();
    match words.first_mut() {
        Some(first) if first.starts_with('(') => *first = &first[1..],
        _ => return Err("if condition without \"(\"".into()),
    }
    match words.last_mut() {
        Some(&mut ")") => {
            words.pop();
        }
        Some(last) if last.ends_with(')') => *last = &last[..last.len() - 1],
        _ => return Err("if condition without \")\"".into()),
    }
    words.retain(|w| !w.is_empty());
    let value = |w: &str| expand(w, maps, req, vars, 0);
    match words.as_slice() {
        [v] if v.starts_with('$') => {
            let v = value(v)?;
            Ok(!v.is_empty() && v != "0")
        }
        [v, op, operand] if v.starts_with('$') => {
            let v = value(v)?;
            match *op {
                "=" => Ok(v == value(operand)?),
                "!=" => Ok(v != value(operand)?),
                "~" | "~*" | "!~" | "!~*" => {
                    let re = compile(operand, op.ends_with('*'))?;
                    Ok(re.is_match(&v) != op.starts_with('!'))
                }
                _ => Err(format!("if operator {op:?}")),
            }
        }
        _ => Err(format!("if condition {:?}", words.join(" "))),
    }
}

/// Map chains deeper than this are a loop.
const MAX_MAP_DEPTH: usize = 16;

/// A complex value: text with `$name` and `${name}` replaced.
fn expand(
    text: &str,
    maps: &BTreeMap<String, Map>,
    req: &Request,
    vars: &BTreeMap<String, String>,
    depth: usize,
) -> Result<String, String> {
    if depth > MAX_MAP_DEPTH {
        return Err("maps refer to each other in a loop".into());
    }
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, tail) = if let Some(braced) = after.strip_prefix('{') {
            let end = braced.find('}').ok_or("unterminated ${")?;
            (&braced[..end], &braced[end + 1..])
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        out.push_str(&variable(name, maps, req, vars, depth)?);
        rest = tail;
    }
    out.push_str(rest);
    Ok(out)
}

fn variable(
    name: &str,
    maps: &BTreeMap<String, Map>,
    req: &Request,
    vars: &BTreeMap<String, String>,
    depth: usize,
) -> Result<String, String> {
    match name {
        "request_method" => return Ok(req.method.to_owned()),
        "remote_user" => return Ok(req.user.to_owned()),
        _ => {}
    }
    if let Some(v) = vars.get(name) {
        return Ok(v.clone());
    }
    let Some(map) = maps.get(name) else {
        return Err(format!(
            "${name} depends on more than the method and the user"
        ));
    };
    if let Some(why) = &map.unsupported {
        return Err(why.clone());
    }
    let key = expand(&map.source, maps, req, vars, depth + 1)?;
    let value = map
        .exact
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(&key))
        .map(|(_, v)| v)
        .or_else(|| {
            map.regex
                .iter()
                .find(|(r, _)| r.is_match(&key))
                .map(|(_, v)| v)
        })
        .unwrap_or(&map.default);
    expand(value, maps, req, vars, depth + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::nginx::parse_str;
    use std::path::Path;

    fn setup(text: &str) -> (Vec<Directive>, BTreeMap<String, Map>) {
        let tree = parse_str(text, Path::new("t.conf")).expect("parses");
        let mut maps = BTreeMap::new();
        let mut stmts = Vec::new();
        for d in tree {
            if d.name == "map" {
                let (var, map) = Map::parse(&d).expect("map");
                maps.insert(var, map);
            } else {
                stmts.push(d);
            }
        }
        (stmts, maps)
    }

    fn outcome(text: &str, method: &str, user: &str) -> Outcome {
        let (stmts, maps) = setup(text);
        let refs: Vec<&Directive> = stmts.iter().collect();
        run(&refs, &maps, &Request { method, user })
    }

    const PUSH_GROUP: &str = r#"
map $remote_user $allowed_push { default 0; testuser 1; Alice 1; }
set $deny "";
if ($request_method !~ ^(GET|HEAD)$) { set $deny "w"; }
if ($allowed_push = 0) { set $deny "${deny}u"; }
if ($deny = wu) { return 403; }
"#;

    #[test]
    fn set_if_chain_restricts_writes_to_the_map_users() {
        assert_eq!(outcome(PUSH_GROUP, "GET", "bob"), Outcome::Pass);
        assert_eq!(outcome(PUSH_GROUP, "PUT", "bob"), Outcome::Return(403));
        assert_eq!(outcome(PUSH_GROUP, "PUT", "testuser"), Outcome::Pass);
        // map string keys ignore case, as nginx's do.
        assert_eq!(outcome(PUSH_GROUP, "DELETE", "alice"), Outcome::Pass);
    }

    #[test]
    fn composite_map_keys_and_regex_entries() {
        let conf = r#"
map $remote_user $pusher { default no; testuser yes; }
map "$request_method:$pusher" $refuse { default 0; "~^(GET|HEAD):" 0; "~*:no$" 1; }
if ($refuse) { return 403; }
"#;
        assert_eq!(outcome(conf, "HEAD", "x"), Outcome::Pass);
        assert_eq!(outcome(conf, "POST", "x"), Outcome::Return(403));
        assert_eq!(outcome(conf, "POST", "testuser"), Outcome::Pass);
    }

    #[test]
    fn what_it_cannot_know_is_unknown() {
        let ua = r#"if ($http_user_agent ~ "^Go ") { return 404; }"#;
        assert!(
            matches!(outcome(ua, "GET", "u"), Outcome::Unknown(w) if w.contains("$http_user_agent"))
        );
        let look = r#"if ($request_method ~ "^(?!GET)") { return 403; }"#;
        assert!(matches!(outcome(look, "GET", "u"), Outcome::Unknown(w) if w.contains("t.conf:1")));
        let file = "if (-f /x) { return 403; }";
        assert!(matches!(outcome(file, "GET", "u"), Outcome::Unknown(_)));
        let lp = "map $b $a { default $b; } map $a $b { default $a; } if ($a) { return 403; }";
        assert!(matches!(outcome(lp, "GET", "u"), Outcome::Unknown(w) if w.contains("loop")));
    }

    #[test]
    fn unquoted_paren_and_plain_truth() {
        assert_eq!(
            outcome("if ($request_method = PUT) { return 405; }", "PUT", ""),
            Outcome::Return(405)
        );
        assert_eq!(
            outcome("set $x 0; if ($x) { return 403; }", "PUT", ""),
            Outcome::Pass
        );
    }
}
