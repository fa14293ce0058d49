#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use super::*;
use crate::route::classify;

const D: &str = "sha256:6c3c624b58dbbcd3c0dd82b4c53f04194d1247c6eebdaab7c610cf7d66709b3b";

fn rule(pattern: &str, who: &[&str], actions: &[&str]) -> Rule {
    Rule::new(
        pattern,
        who.iter().map(|s| s.to_string()).collect(),
        actions.iter().map(|s| s.to_string()).collect(),
    )
    .unwrap_or_else(|e| panic!("{pattern}: {e}"))
}

fn rule_err(pattern: &str, who: &[&str], actions: &[&str]) -> String {
    Rule::new(
        pattern,
        who.iter().map(|s| s.to_string()).collect(),
        actions.iter().map(|s| s.to_string()).collect(),
    )
    .unwrap_err()
}

/// The status the proxy answers: a route refusal's own, or the decision's.
fn status(acl: &Acl, groups: &Groups, user: &str, method: &str, target: &str) -> u16 {
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let id = if user == "-" {
        Identity::Anonymous
    } else {
        Identity::User(user)
    };
    match classify(method, path, query, None) {
        Err(e) => e.status(),
        Ok(t) => match acl.decide(id, groups, &t) {
            Decision::Allow => 200,
            Decision::NeedAuth => 401,
            Decision::Deny => 403,
        },
    }
}

fn run_table(acl: &Acl, groups: &Groups, rows: &[(&str, &str, &str, u16)]) {
    let mut failures = Vec::new();
    for &(user, method, target, want) in rows {
        let got = status(acl, groups, user, method, target);
        if got != want {
            failures.push(format!("{user} {method} {target}: want {want}, got {got}"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// A config exercising every feature: per-team namespaces, a frozen
/// repository, a public read-only area, an explicit deny, a CI robot, and
/// admins.
fn teams() -> (Acl, Groups) {
    let acl = Acl::new(vec![
        rule("team-a/frozen", &["@team-a"], &["pull"]),
        rule("team-a/**", &["@team-a", "alice"], &["pull", "push"]),
        rule("team-b/*", &["@team-b"], &["pull", "push", "delete"]),
        rule("public/**", &["anonymous"], &["pull"]),
        rule("public/**", &["@admins"], &["pull", "push", "delete"]),
        rule("secret/vault", &["mallory"], &[]),
        rule("**", &["ci-robot"], &["pull", "catalog"]),
        rule("*", &["authenticated"], &["pull"]),
        rule("**", &["@admins"], &["pull", "push", "delete", "catalog"]),
    ]);
    let mut groups = Groups::parse("team-a: tom tina\nteam-b: bob\n").unwrap();
    groups
        .merge(&BTreeMap::from([(
            "admins".to_owned(),
            vec!["root".to_owned(), "mallory".to_owned()],
        )]))
        .unwrap();
    assert!(acl.undefined_groups(&groups).is_empty());
    (acl, groups)
}

#[test]
fn decision_table() {
    let (acl, groups) = teams();
    let mount = |to: &str, from: &str| format!("/v2/{to}/blobs/uploads/?mount={D}&from={from}");
    let m_public = mount("team-a/app", "public/base");
    let m_team_b = mount("team-a/app", "team-b/x");
    let m_secret = mount("team-a/app", "secret/vault");
    let m_encoded = mount("team-a/app", "team-b%2Fx");
    let m_into_b = mount("team-b/x", "team-a/app");
    let m_inside_a = mount("team-a/app", "team-a/other");
    let m_root = mount("secret/vault", "team-a/app");
    let m_bad_from = mount("team-a/app", "Team-b/x");
    let blob = |repo: &str| format!("/v2/{repo}/blobs/{D}");
    let b_team_b = blob("team-b/x");
    let b_public = blob("public/x");
    #[rustfmt::skip]
    let rows: Vec<(&str, &str, &str, u16)> = vec![
        // The ping: credentials matter in this config, so anonymous gets the
        // challenge; every user gets 200.
        ("-", "GET", "/v2/", 401),
        ("-", "HEAD", "/v2/", 401),
        ("eve", "GET", "/v2/", 200),
        ("tom", "GET", "/v2/", 200),
        // Anonymous: public pulls only; a push still gets the challenge.
        ("-", "GET", "/v2/public/x/manifests/latest", 200),
        ("-", "HEAD", "/v2/public/x/manifests/latest", 200),
        ("-", "GET", "/v2/public/x/y/tags/list", 200),
        ("-", "GET", &b_public, 200),
        ("-", "PUT", "/v2/public/x/manifests/latest", 401),
        ("-", "POST", "/v2/public/x/blobs/uploads/", 401),
        ("-", "DELETE", &b_public, 401),
        ("-", "GET", "/v2/public/manifests/latest", 401), // `public/**` is not `public`
        ("-", "GET", "/v2/team-a/app/manifests/1", 401),
        ("-", "GET", "/v2/alpine/manifests/latest", 401),
        ("-", "GET", "/v2/_catalog", 401),
        ("-", "POST", &m_public, 401),
        // A user keeps what anonymous may do, and gets no more there.
        ("eve", "GET", "/v2/public/x/manifests/latest", 200),
        ("eve", "PUT", "/v2/public/x/manifests/latest", 403),
        ("eve", "GET", "/v2/alpine/manifests/latest", 200), // `*` authenticated
        ("eve", "PUT", "/v2/alpine/manifests/latest", 403),
        ("eve", "GET", "/v2/library/alpine/manifests/latest", 403), // `*` is one segment
        ("eve", "GET", "/v2/_catalog", 403),
        ("eve", "GET", "/v2/team-a/app/manifests/1", 403),
        ("eve", "PATCH", "/v2/team-a/app/blobs/uploads/u1", 403),
        // Team A through its group; `**` is any depth, not the bare namespace.
        ("tom", "PUT", "/v2/team-a/app/manifests/1", 200),
        ("tom", "POST", "/v2/team-a/app/blobs/uploads/", 200),
        ("tom", "PATCH", "/v2/team-a/app/blobs/uploads/u1", 200),
        ("tom", "PUT", "/v2/team-a/app/blobs/uploads/u1", 200),
        ("tom", "GET", "/v2/team-a/app/blobs/uploads/u1", 200),
        ("tom", "DELETE", "/v2/team-a/app/blobs/uploads/u1", 200),
        ("tom", "PUT", "/v2/team-a/x/y/z/manifests/1", 200),
        ("tom", "DELETE", "/v2/team-a/app/manifests/1", 403),
        ("tom", "PUT", "/v2/team-a/manifests/1", 403), // falls to `*`: pull only
        ("tom", "GET", "/v2/team-a/manifests/1", 200),
        ("tom", "PUT", "/v2/team-b/x/manifests/1", 403),
        ("tom", "GET", "/v2/team-b/x/manifests/1", 403),
        // First match wins: the frozen repository is pull-only for team A...
        ("tom", "PUT", "/v2/team-a/frozen/manifests/1", 403),
        ("tom", "GET", "/v2/team-a/frozen/manifests/1", 200),
        ("tina", "POST", "/v2/team-a/frozen/blobs/uploads/", 403),
        // ...but that rule is not alice's (she is named, not a member).
        ("alice", "PUT", "/v2/team-a/frozen/manifests/1", 200),
        ("alice", "PUT", "/v2/team-a/app/manifests/1", 200),
        ("alice", "PUT", "/v2/team-b/x/manifests/1", 403),
        // Team B: exactly one level below team-b/.
        ("bob", "PUT", "/v2/team-b/x/manifests/1", 200),
        ("bob", "DELETE", "/v2/team-b/x/manifests/1", 200),
        ("bob", "DELETE", &b_team_b, 200),
        ("bob", "PUT", "/v2/team-b/x/y/manifests/1", 403),
        ("bob", "PUT", "/v2/team-b/manifests/1", 403),
        // Admins, and an explicit deny that beats a later grant.
        ("root", "DELETE", "/v2/secret/vault/manifests/1", 200),
        // First match wins for admins too: single-segment names hit the
        // `*` rule (pull only) before the admins' `**`.
        ("root", "DELETE", "/v2/alpine/manifests/1", 403),
        ("root", "GET", "/v2/alpine/manifests/1", 200),
        ("root", "PUT", "/v2/public/x/manifests/1", 200),
        ("root", "GET", "/v2/_catalog", 200),
        ("mallory", "GET", "/v2/secret/vault/manifests/1", 403),
        ("mallory", "GET", "/v2/secret/vault/x/manifests/1", 200),
        ("mallory", "GET", "/v2/secret/x/manifests/1", 200),
        ("mallory", "PUT", "/v2/public/x/manifests/1", 200),
        ("mallory", "GET", "/v2/_catalog", 200),
        // The robot reads everything and writes nothing.
        ("ci-robot", "GET", "/v2/team-b/x/manifests/1", 200),
        ("ci-robot", "HEAD", "/v2/secret/vault/manifests/1", 200),
        ("ci-robot", "GET", "/v2/_catalog", 200),
        ("ci-robot", "PUT", "/v2/team-b/x/manifests/1", 403),
        ("ci-robot", "POST", "/v2/team-b/x/blobs/uploads/", 403),
        // Names are exact: no case folding of users.
        ("Tom", "PUT", "/v2/team-a/app/manifests/1", 403),
        // Mounts need push on the target and pull on the source.
        ("tom", "POST", &m_public, 200),
        ("tom", "POST", &m_inside_a, 200),
        ("tom", "POST", &m_team_b, 403),
        ("tom", "POST", &m_secret, 403),
        ("tom", "POST", &m_encoded, 403), // decoded to team-b/x
        ("tom", "POST", &m_bad_from, 400),
        ("bob", "POST", &m_into_b, 403),
        ("root", "POST", &m_root, 200),
        ("eve", "POST", &m_public, 403),
        // Bypass attempts are refused before any rule.
        ("tom", "GET", "/v2/team-a/app/../../team-b/x/manifests/1", 400),
        ("tom", "PUT", "/v2/team-a/%2e%2e/team-b/x/manifests/1", 400),
        ("tom", "PUT", "/v2/team-a%2f..%2fteam-b/x/manifests/1", 400),
        ("tom", "PUT", "/v2/team-a//team-b/x/manifests/1", 400),
        ("tom", "PUT", "/v2/./team-b/x/manifests/1", 400),
        ("tom", "PUT", "/v2/Team-b/x/manifests/1", 404),
        ("tom", "PUT", "/v2/team-a/App/manifests/1", 404),
        ("tom", "PUT", "/v2/team-a/app/manifests/1/", 404),
        ("tom", "PUT", "/v2/team-a/app/tags/list", 405),
        ("-", "GET", "/v2/public/../secret/manifests/1", 400),
        ("-", "GET", "/v2/public%2f..%2fsecret/manifests/1", 400),
        ("-", "GET", "/v2/public/x/manifests/1/", 404),
        ("-", "OPTIONS", "/v2/public/x/manifests/1", 405),
        ("-", "GET", "/v2/PUBLIC/x/manifests/1", 404),
    ];
    run_table(&acl, &groups, &rows);
}

#[test]
fn push_users_shorthand_keeps_the_old_behaviour() {
    let groups = Groups::default();
    #[rustfmt::skip]
    let every_request: [(&str, &str); 9] = [
        ("GET", "/v2/a/manifests/1"),
        ("HEAD", "/v2/a/b/blobs/sha256:ab"),
        ("GET", "/v2/a/tags/list"),
        ("GET", "/v2/_catalog"),
        ("PUT", "/v2/a/manifests/1"),
        ("POST", "/v2/a/blobs/uploads/"),
        ("PATCH", "/v2/a/blobs/uploads/u"),
        ("DELETE", "/v2/a/manifests/sha256:ab"),
        ("DELETE", "/v2/a/blobs/sha256:ab"),
    ];
    let reads = 4;
    // No push_users: any valid user does anything; anonymous nothing.
    let open = Acl::from_push_users(None);
    for (method, path) in &every_request {
        assert_eq!(
            status(&open, &groups, "bob", method, path),
            200,
            "{method} {path}"
        );
        assert_eq!(
            status(&open, &groups, "-", method, path),
            401,
            "{method} {path}"
        );
    }
    assert_eq!(status(&open, &groups, "-", "GET", "/v2/"), 401);
    assert!(!open.anonymous_ping_allowed());
    // push_users: they push and delete; others read.
    let acl = Acl::from_push_users(Some(vec!["alice".into(), "anonymous".into()]));
    for (i, (method, path)) in every_request.iter().enumerate() {
        let read = i < reads;
        assert_eq!(
            status(&acl, &groups, "alice", method, path),
            200,
            "{method} {path}"
        );
        let want = if read { 200 } else { 403 };
        assert_eq!(
            status(&acl, &groups, "bob", method, path),
            want,
            "{method} {path}"
        );
        // "anonymous" in push_users is a user name, never the keyword.
        assert_eq!(
            status(&acl, &groups, "-", method, path),
            401,
            "{method} {path}"
        );
        assert_eq!(
            status(&acl, &groups, "anonymous", method, path),
            200,
            "{method} {path}"
        );
    }
    assert_eq!(status(&acl, &groups, "-", "GET", "/v2/"), 401);
    assert_eq!(status(&acl, &groups, "bob", "GET", "/v2/"), 200);
    // An empty list: read-only for everyone.
    let ro = Acl::from_push_users(Some(vec![]));
    for (i, (method, path)) in every_request.iter().enumerate() {
        let want = if i < reads { 200 } else { 403 };
        assert_eq!(
            status(&ro, &groups, "alice", method, path),
            want,
            "{method} {path}"
        );
    }
    assert_eq!(ro.rules().len(), 1);
    assert_eq!(acl.rules().len(), 2);
}

#[test]
fn public_read_only_mirror() {
    // Nobody but anonymous is named: credentials can never matter, so the
    // ping is 200 and the classic docker engine pulls without logging in.
    let acl = Acl::new(vec![rule("**", &["anonymous"], &["pull", "catalog"])]);
    let g = Groups::default();
    assert!(acl.anonymous_ping_allowed());
    #[rustfmt::skip]
    run_table(&acl, &g, &[
        ("-", "GET", "/v2/", 200),
        ("-", "GET", "/v2/library/alpine/manifests/3", 200),
        ("-", "GET", "/v2/_catalog", 200),
        ("-", "PUT", "/v2/library/alpine/manifests/3", 401),
        ("-", "DELETE", "/v2/library/alpine/manifests/3", 401),
        ("eve", "GET", "/v2/", 200),
        ("eve", "GET", "/v2/library/alpine/manifests/3", 200),
        ("eve", "PUT", "/v2/library/alpine/manifests/3", 403),
    ]);
    // Adding a pusher makes credentials matter: the ping challenges.
    let acl = Acl::new(vec![
        rule("**", &["anonymous"], &["pull", "catalog"]),
        rule("**", &["ci"], &["pull", "push"]),
    ]);
    assert!(!acl.anonymous_ping_allowed());
    #[rustfmt::skip]
    run_table(&acl, &g, &[
        ("-", "GET", "/v2/", 401),
        ("-", "GET", "/v2/library/alpine/manifests/3", 200),
        ("ci", "PUT", "/v2/library/alpine/manifests/3", 200),
        ("ci", "GET", "/v2/_catalog", 200), // anonymous may, so ci may
    ]);
    // Deny-only rules for users do not make credentials matter.
    let acl = Acl::new(vec![
        rule("secret", &["authenticated"], &[]),
        rule("**", &["anonymous"], &["pull"]),
    ]);
    assert!(acl.anonymous_ping_allowed());
    // ...and cannot take away what anonymous may do.
    assert_eq!(
        status(&acl, &g, "eve", "GET", "/v2/secret/manifests/1"),
        200
    );
}

#[test]
fn no_rules_deny_everything() {
    let acl = Acl::new(vec![]);
    let g = Groups::default();
    #[rustfmt::skip]
    run_table(&acl, &g, &[
        ("-", "GET", "/v2/", 200),
        ("-", "GET", "/v2/a/manifests/1", 401),
        ("-", "GET", "/v2/_catalog", 401),
        ("eve", "GET", "/v2/", 200),
        ("eve", "GET", "/v2/a/manifests/1", 403),
        ("eve", "GET", "/v2/_catalog", 403),
    ]);
    let default = Acl::default();
    assert_eq!(status(&default, &g, "eve", "GET", "/v2/a/manifests/1"), 403);
}

#[test]
fn unknown_groups_match_nobody_and_are_reported() {
    let acl = Acl::new(vec![
        rule("a/**", &["@ghosts", "@team"], &["pull"]),
        rule("**", &["@ghosts"], &["pull"]),
    ]);
    let g = Groups::parse("team: tom\n").unwrap();
    assert_eq!(
        acl.undefined_groups(&g),
        [
            "access rule 1 (a/**): group @ghosts is not defined",
            "access rule 2 (**): group @ghosts is not defined",
        ]
    );
    assert_eq!(status(&acl, &g, "tom", "GET", "/v2/a/x/manifests/1"), 200);
    assert_eq!(
        status(&acl, &g, "ghosts", "GET", "/v2/a/x/manifests/1"),
        403
    );
}

#[test]
fn patterns_match_as_documented() {
    #[rustfmt::skip]
    let cases: &[(&str, &str, bool)] = &[
        ("**", "a", true),
        ("**", "a/b/c", true),
        ("*", "a", true),
        ("*", "a/b", false),
        ("team-a/*", "team-a/x", true),
        ("team-a/*", "team-a/x/y", false),
        ("team-a/*", "team-a", false),
        ("team-a/**", "team-a/x", true),
        ("team-a/**", "team-a/x/y/z", true),
        ("team-a/**", "team-a", false),
        ("team-a/**", "team-ab/x", false),
        ("team-a/**", "team/a/x", false),
        ("team-a/**", "x/team-a/y", false),
        ("*/cache", "a/cache", true),
        ("*/cache", "a/b/cache", false),
        ("*/cache", "cache", false),
        ("*/*", "a/b", true),
        ("*/*", "a", false),
        ("*/**", "a/b/c", true),
        ("*/**", "a", false),
        ("a/*/c/**", "a/b/c/d", true),
        ("a/*/c/**", "a/b/c", false),
        ("a/*/c/**", "a/b/x/d", false),
        ("library/alpine", "library/alpine", true),
        ("library/alpine", "library/alpine/x", false),
        ("library/alpine", "library", false),
        ("library/alpine", "library/alpinex", false),
    ];
    for &(pattern, name, want) in cases {
        let p = Pattern::parse(pattern).unwrap();
        assert_eq!(p.matches(Some(name)), want, "{pattern} ~ {name}");
    }
    // Only `**` matches the catalog.
    assert!(Pattern::parse("**").unwrap().matches(None));
    for p in ["*", "*/**", "a/**", "a"] {
        assert!(!Pattern::parse(p).unwrap().matches(None), "{p}");
    }
}

#[test]
fn rule_validation() {
    #[rustfmt::skip]
    let bad: &[(&str, &[&str], &[&str], &str)] = &[
        ("", &["alice"], &["pull"], "empty pattern"),
        ("/a", &["alice"], &["pull"], "empty segment"),
        ("a/", &["alice"], &["pull"], "empty segment"),
        ("a//b", &["alice"], &["pull"], "empty segment"),
        ("**/a", &["alice"], &["pull"], "'**' may only be the last"),
        ("a/**/b", &["alice"], &["pull"], "'**' may only be the last"),
        ("team-*", &["alice"], &["pull"], "partial globs"),
        ("a/*x", &["alice"], &["pull"], "partial globs"),
        ("***", &["alice"], &["pull"], "partial globs"),
        ("Team-a/*", &["alice"], &["pull"], "\"Team-a\" can never match"),
        ("a b", &["alice"], &["pull"], "can never match"),
        ("a/../b", &["alice"], &["pull"], "\"..\" can never match"),
        ("a/./b", &["alice"], &["pull"], "\".\" can never match"),
        ("a%2fb", &["alice"], &["pull"], "can never match"),
        ("a:5000/b", &["alice"], &["pull"], "can never match"),
        ("a", &[], &["pull"], "who is empty"),
        ("a", &[""], &["pull"], "expected \"anonymous\""),
        ("a", &["al:ice"], &["pull"], "expected \"anonymous\""),
        ("a", &[" alice"], &["pull"], "surrounding blanks"),
        ("a", &["al\u{7}ice"], &["pull"], "control"),
        ("a", &["@"], &["pull"], "group name"),
        ("a", &["@a b"], &["pull"], "group name"),
        ("a", &["@a@b"], &["pull"], "group name"),
        ("a", &["Anonymous"], &["pull"], "did you mean \"anonymous\""),
        ("a", &["AUTHENTICATED"], &["pull"], "did you mean \"authenticated\""),
        ("a", &["alice"], &["read"], "unknown action \"read\""),
        ("a", &["alice"], &["Pull"], "unknown action \"Pull\""),
        ("a", &["alice"], &["*"], "unknown action"),
        ("a", &["alice"], &["pull", "catalog"], "only be granted on \"**\""),
        ("*", &["alice"], &["catalog"], "only be granted on \"**\""),
        ("a", &["alice"], &["push"], "push without pull"),
        ("**", &["alice"], &["push", "delete"], "push without pull"),
    ];
    for &(pattern, who, actions, needle) in bad {
        let e = rule_err(pattern, who, actions);
        assert!(e.contains(needle), "{pattern} {who:?} {actions:?}: {e}");
    }
    let long = "a".repeat(256);
    assert!(rule_err(&long, &["a"], &["pull"]).contains("longer than"));
    let ok255 = "a".repeat(255);
    rule(&ok255, &["a"], &["pull"]);
    assert!(rule_err(&format!("{}/**", "a".repeat(255)), &["a"], &["pull"]).contains("longer"));
    rule(&format!("{}/**", "a".repeat(253)), &["a"], &["pull"]);

    let r = rule(
        "team-a/**",
        &["@team-a", "alice", "anonymous", "authenticated"],
        &["push", "pull", "pull"],
    );
    assert_eq!(r.pattern(), "team-a/**");
    assert_eq!(
        r.actions().collect::<Vec<_>>(),
        [Action::Pull, Action::Push]
    );
    assert_eq!(
        r.to_string(),
        "team-a/** who=[@team-a, alice, anonymous, authenticated] actions=[pull, push]"
    );
    // A user whose name starts with '@' cannot be named; one with blanks
    // inside can.
    rule("a", &["first last"], &["pull"]);
    // Empty actions: an explicit deny.
    assert_eq!(rule("a", &["alice"], &[]).actions().count(), 0);
}
