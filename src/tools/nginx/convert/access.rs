//! From what nginx lets each kind of client do to regproxy's access
//! settings: nothing (every valid user may push), `push_users`, or
//! `[[access]]` rules.
//!
//! The converter evaluates the location for every request method and every
//! principal (anonymous, each user a `$remote_user` map names, any other
//! valid user) and hands the allowed methods here; this module turns methods
//! into registry actions and picks the simplest regproxy form that says the
//! same thing.

use std::collections::{BTreeMap, BTreeSet};

/// The registry actions nginx can tell apart by method.
pub(super) const ACTIONS: [(&str, &[&str]); 3] = [
    ("pull", &["GET", "HEAD"]),
    ("push", &["POST", "PUT", "PATCH"]),
    ("delete", &["DELETE"]),
];

pub(super) type Actions = BTreeSet<&'static str>;

/// The actions whose methods are all allowed; an action with some methods
/// allowed and others not has no regproxy equivalent.
pub(super) fn actions(allowed: &mut dyn FnMut(&str) -> bool) -> Result<Actions, String> {
    let mut out = Actions::new();
    for (action, ms) in ACTIONS {
        let yes: Vec<&str> = ms.iter().copied().filter(|m| allowed(m)).collect();
        if yes.len() == ms.len() {
            out.insert(action);
        } else if !yes.is_empty() {
            return Err(format!(
                "{action} is allowed for {} but not for the other methods of {action}",
                yes.join("/")
            ));
        }
    }
    Ok(out)
}

/// What each kind of client may do.
#[derive(Debug, Default)]
pub(super) struct Principals {
    pub anonymous: Actions,
    /// Users named in a `$remote_user` map, as spelled there.
    pub users: BTreeMap<String, Actions>,
    /// Every other valid user.
    pub other: Actions,
}

/// regproxy's form of it.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Access {
    /// Valid users may do everything, anonymous nothing: regproxy's default.
    AllUsers,
    /// Valid users pull; these also push and delete.
    PushUsers(Vec<String>),
    /// `[[access]]` rules over `**`, first match wins: (who, actions).
    Rules(Vec<(Vec<String>, Vec<&'static str>)>),
}

pub(super) fn decide(p: &Principals) -> Result<Access, String> {
    let all: Actions = ACTIONS.iter().map(|(a, _)| *a).collect();
    let pull: Actions = ["pull"].into();
    for (who, set) in p
        .users
        .iter()
        .map(|(u, s)| (u.as_str(), s))
        .chain([("anonymous", &p.anonymous), ("other users", &p.other)])
    {
        if !set.is_empty() && !set.contains("pull") {
            return Err(format!(
                "{who} may {} but not pull; clients read while they push",
                set.iter().copied().collect::<Vec<_>>().join("/")
            ));
        }
    }
    if p.anonymous.is_empty() {
        if p.other == all && p.users.values().all(|s| *s == all) {
            return Ok(Access::AllUsers);
        }
        if p.other == pull && p.users.values().all(|s| *s == pull || *s == all) {
            let pushers = p
                .users
                .iter()
                .filter(|(_, s)| **s == all)
                .map(|(u, _)| u.clone())
                .collect();
            return Ok(Access::PushUsers(pushers));
        }
    }
    // Rules: anonymous first (it matches nobody else), then the named users
    // whose rights differ from everyone else's, grouped, then the rest.
    let with_catalog = |s: &Actions| {
        let mut v: Vec<&'static str> = s.iter().copied().collect();
        if s.contains("pull") {
            // nginx let every puller list the catalog; only a `**` rule
            // grants it in regproxy, and these rules are all `**`.
            v.push("catalog");
        }
        v
    };
    let mut rules = Vec::new();
    if !p.anonymous.is_empty() {
        rules.push((vec!["anonymous".to_owned()], with_catalog(&p.anonymous)));
    }
    let mut groups: BTreeMap<&Actions, Vec<String>> = BTreeMap::new();
    for (u, s) in &p.users {
        if *s != p.other {
            groups.entry(s).or_default().push(u.clone());
        }
    }
    for (s, users) in groups {
        if !s.is_empty() {
            rules.push((users, with_catalog(s)));
        }
    }
    if !p.other.is_empty() {
        rules.push((vec!["authenticated".to_owned()], with_catalog(&p.other)));
    }
    // A named user with no rights must not fall through to the
    // `authenticated` rule.
    let denied: Vec<String> = p
        .users
        .iter()
        .filter(|(_, s)| s.is_empty() && !p.other.is_empty())
        .map(|(u, _)| u.clone())
        .collect();
    if !denied.is_empty() {
        return Err(format!(
            "{} may do nothing while other users may; regproxy rules cannot deny a user",
            denied.join(", ")
        ));
    }
    Ok(Access::Rules(rules))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(a: &[&'static str]) -> Actions {
        a.iter().copied().collect()
    }

    #[test]
    fn the_usual_shapes() {
        let all = set(&["pull", "push", "delete"]);
        let mut p = Principals {
            other: all.clone(),
            ..Default::default()
        };
        assert_eq!(decide(&p), Ok(Access::AllUsers));
        p.other = set(&["pull"]);
        p.users.insert("testuser".into(), all.clone());
        p.users.insert("reader".into(), set(&["pull"]));
        assert_eq!(decide(&p), Ok(Access::PushUsers(vec!["testuser".into()])));
        // limit_except GET { auth_basic … }: anonymous pulls, users push.
        p = Principals {
            anonymous: set(&["pull"]),
            other: all,
            ..Default::default()
        };
        assert_eq!(
            decide(&p),
            Ok(Access::Rules(vec![
                (vec!["anonymous".into()], vec!["pull", "catalog"]),
                (
                    vec!["authenticated".into()],
                    vec!["delete", "pull", "push", "catalog"]
                ),
            ]))
        );
    }

    #[test]
    fn what_rules_cannot_say() {
        let p = Principals {
            other: set(&["push"]),
            ..Default::default()
        };
        assert!(decide(&p)
            .expect_err("push without pull")
            .contains("not pull"));
        let mut p = Principals {
            other: set(&["pull"]),
            ..Default::default()
        };
        p.users.insert("mallory".into(), set(&[]));
        assert!(decide(&p)
            .expect_err("a denied user")
            .contains("cannot deny"));
        let half = actions(&mut |m| m == "PUT" || m.starts_with('G') || m == "HEAD");
        assert!(half.expect_err("half a push").contains("PUT"));
    }
}
