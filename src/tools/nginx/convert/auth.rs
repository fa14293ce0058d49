//! The `/v2/` location's authentication and authorization: `auth_basic`,
//! `auth_basic_user_file`, `limit_except`, the user-agent `if`, and the
//! `map`/`set`/`if`/`return` push restrictions, turned into `[auth]` keys,
//! `push_users` or `[[access]]` rules.
//!
//! Rather than recognising one spelling of a push restriction, the location
//! is run ([`rewrite::run`]) for every method and every principal: anonymous,
//! each user a `$remote_user` map names, and any other user. What each may
//! do is then handed to [`access::decide`].

use std::collections::{BTreeMap, BTreeSet};

use super::access::{self, Access, Principals};
use super::out::{list, origins, string, Table};
use super::{rewrite, Cx, Directive, Levels, Map, Outcome, OTHER_USER, RECIPE_USER_AGENT_RE};

/// A `limit_except` block: what applies to the methods it does not list.
struct LimitExcept<'a> {
    d: &'a Directive,
    /// Methods allowed without its body (GET brings HEAD, as in nginx).
    listed: BTreeSet<String>,
    deny_all: bool,
    /// `auth_basic` inside: `Some(true)` on, `Some(false)` off.
    auth: Option<bool>,
    realm: Option<&'a Directive>,
    file: Option<&'a Directive>,
}

impl LimitExcept<'_> {
    fn applies(&self, method: &str) -> bool {
        !self.listed.contains(method)
    }
}

impl Cx<'_> {
    pub(super) fn access(
        &mut self,
        location: Option<&Directive>,
        levels: &Levels,
        maps: &BTreeMap<String, (Map, &Directive)>,
    ) {
        let realm = levels.get(&mut self.out, "auth_basic");
        let file = levels.get(&mut self.out, "auth_basic_user_file");
        let auth_on = realm.is_some_and(|d| d.args.first().is_some_and(|a| a != "off"));
        let children = location.map_or(&[][..], |l| l.children());
        let le = self.limit_except(children);

        // The realm and file: the location's, else the limit_except's.
        let location_realm = realm;
        let realm = realm
            .filter(|_| auth_on)
            .or(le.as_ref().and_then(|l| l.realm));
        let file = file.or(le.as_ref().and_then(|l| l.file));
        if let Some(off) = location_realm.filter(|_| !auth_on) {
            self.out.built_in(
                off,
                "no authentication here; the [[access]] rules say who needs it",
            );
        }
        if let Some(r) = realm {
            self.out.mark(r);
            if let Some(text) = r.args.first() {
                self.out
                    .set(Table::Auth, "realm", string(text), super::at(r));
            }
        }
        if let Some(lf) = le.as_ref().and_then(|l| l.file) {
            match file {
                Some(f) if std::ptr::eq(f, lf) => {}
                Some(f) if f.args == lf.args => {
                    self.out.built_in(lf, "the same file as the location's")
                }
                _ => self
                    .out
                    .skip(lf, "regproxy reads one htpasswd file for every method"),
            }
        }
        match file {
            Some(f) if f.args.len() == 1 => {
                self.out.mark(f);
                let p = self.path(&f.args[0]);
                self.out
                    .set(Table::Auth, "htpasswd", string(&p), super::at(f));
            }
            Some(f) => self.out.skip(f, "expected one file"),
            None => {}
        }

        let mut statements = Vec::new();
        for d in children {
            match d.name.as_str() {
                "if" if d.args.first().is_some_and(|a| a == "($http_user_agent") => {
                    self.user_agent_if(d)
                }
                "if" | "set" | "return" => statements.push(d),
                _ => {}
            }
        }
        let involved = involved_maps(&statements, maps);
        let mut origin: Vec<&Directive> = involved.iter().map(|(_, d)| *d).collect();
        origin.extend(statements.iter().copied());
        if let Some(l) = &le {
            origin.push(l.d);
        }
        let result = self.principals(&statements, maps, &involved, le.as_ref(), auth_on);
        let decision = result.and_then(|p| access::decide(&p));
        match decision {
            Ok(access) => {
                for d in &origin {
                    self.out.mark_tree(d);
                }
                self.emit(access, &origin);
            }
            Err(why) => {
                for d in &origin {
                    self.out.skip(
                        d,
                        &format!("the access rules it builds have no regproxy form: {why}"),
                    );
                }
            }
        }
    }

    fn emit(&mut self, access: Access, origin: &[&Directive]) {
        let from = if origin.is_empty() {
            "auth_basic: every valid user".to_owned()
        } else {
            origins(origin)
        };
        match access {
            Access::AllUsers => {
                if !origin.is_empty() {
                    self.out.note(format!(
                        "{from}: every valid user may pull and push (regproxy's default)"
                    ));
                }
            }
            Access::PushUsers(users) => {
                self.out.set(
                    Table::Auth,
                    "push_users",
                    list(&users),
                    format!("{from} (nginx matched these names ignoring case; regproxy does not)"),
                );
            }
            Access::Rules(rules) => {
                for (who, actions) in rules {
                    self.out.rule(&from, &who, &actions);
                }
            }
        }
    }

    fn limit_except<'a>(&mut self, children: &'a [Directive]) -> Option<LimitExcept<'a>> {
        let mut found = children.iter().filter(|d| d.name == "limit_except");
        let d = found.next()?;
        for extra in found {
            self.out
                .skip(extra, "a second limit_except in one location");
        }
        let mut listed: BTreeSet<String> = d.args.iter().map(|m| m.to_ascii_uppercase()).collect();
        if listed.contains("GET") {
            listed.insert("HEAD".into());
        }
        let mut le = LimitExcept {
            d,
            listed,
            deny_all: false,
            auth: None,
            realm: None,
            file: None,
        };
        for c in d.children() {
            match (c.name.as_str(), c.args.first().map(String::as_str)) {
                ("deny", Some("all")) => {
                    le.deny_all = true;
                    self.out.mark(c);
                }
                ("auth_basic", Some(a)) => {
                    le.auth = Some(a != "off");
                    if a != "off" {
                        le.realm = Some(c);
                    }
                    self.out.mark(c);
                }
                ("auth_basic_user_file", Some(_)) => le.file = Some(c),
                ("allow" | "deny", _) => self.out.skip(
                    c,
                    "address-based access control; put it in a firewall or the balancer",
                ),
                _ => {}
            }
        }
        Some(le)
    }

    fn user_agent_if(&mut self, d: &Directive) {
        let recipe = matches!(d.args.as_slice(), [_, op, re, close]
            if op == "~" && re == RECIPE_USER_AGENT_RE && close == ")")
            && matches!(d.children(), [r] if r.name == "return" && r.args == ["404"]);
        if recipe {
            self.out.built_in(
                d,
                "regproxy refuses pre-1.6 docker agents already: 404 before auth, same regex semantics",
            );
            for c in d.children() {
                self.out.mark(c);
            }
        } else {
            self.out.skip(
                d,
                "regproxy blocks exactly the recipe's user agents (docker 1.3-1.5, Go <= 1.5) and has no user-agent rules",
            );
        }
    }

    /// What each principal may do, by running the location.
    fn principals(
        &mut self,
        statements: &[&Directive],
        maps: &BTreeMap<String, (Map, &Directive)>,
        involved: &[(String, &Directive)],
        le: Option<&LimitExcept>,
        auth_on: bool,
    ) -> Result<Principals, String> {
        let eval_maps: BTreeMap<String, Map> = maps
            .iter()
            .map(|(k, (m, _))| (k.clone(), m.clone()))
            .collect();
        let mut users: Vec<String> = Vec::new();
        for (var, _) in involved {
            let Some(m) = eval_maps.get(var) else {
                continue;
            };
            if m.source.contains("$remote_user") {
                if m.has_regex() {
                    return Err(format!(
                        "map ${var} matches user names with a regex; list the users instead"
                    ));
                }
                users.extend(m.keys().map(str::to_owned));
            }
        }
        users.sort();
        users.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
        let needs_auth = |m: &str| match le {
            Some(l) if l.applies(m) => l.auth.unwrap_or(auth_on),
            _ => auth_on,
        };
        let denied = |m: &str| le.is_some_and(|l| l.applies(m) && l.deny_all);
        let actions_of = |user: &str| -> Result<access::Actions, String> {
            let mut err = None;
            let mut allowed = |m: &str| {
                if (user.is_empty() && needs_auth(m)) || denied(m) {
                    return false;
                }
                match rewrite::run(
                    statements,
                    &eval_maps,
                    &rewrite::Request { method: m, user },
                ) {
                    Outcome::Pass => true,
                    Outcome::Return(_) => false,
                    Outcome::Unknown(why) => {
                        err.get_or_insert(why);
                        false
                    }
                }
            };
            let r = access::actions(&mut allowed);
            match err {
                Some(why) => Err(why),
                None => r,
            }
        };
        let mut p = Principals {
            anonymous: actions_of("")?,
            other: actions_of(OTHER_USER)?,
            ..Default::default()
        };
        for u in users {
            let a = actions_of(&u)?;
            p.users.insert(u, a);
        }
        Ok(p)
    }
}

/// The maps the statements use, directly or through other maps.
fn involved_maps<'a>(
    statements: &[&Directive],
    maps: &BTreeMap<String, (Map, &'a Directive)>,
) -> Vec<(String, &'a Directive)> {
    let mut todo: Vec<String> = statements
        .iter()
        .flat_map(|d| all_args(d))
        .flat_map(|a| variables(&a))
        .collect();
    let mut found: BTreeMap<String, &'a Directive> = BTreeMap::new();
    while let Some(v) = todo.pop() {
        if found.contains_key(&v) {
            continue;
        }
        if let Some((_, d)) = maps.get(&v) {
            found.insert(v, d);
            todo.extend(all_args(d).iter().flat_map(|a| variables(a)));
        }
    }
    found.into_iter().collect()
}

/// Every word of `d` and its children (names included: map keys are names).
fn all_args(d: &Directive) -> Vec<String> {
    let mut out = vec![d.name.clone()];
    out.extend(d.args.iter().cloned());
    for c in d.children() {
        out.extend(all_args(c));
    }
    out
}

/// The `$name`s and `${name}`s in a word.
fn variables(word: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = word;
    while let Some(i) = rest.find('$') {
        let after = rest[i + 1..].trim_start_matches('{');
        let end = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        if end > 0 {
            out.push(after[..end].to_owned());
        }
        rest = &after[end..];
    }
    out
}
