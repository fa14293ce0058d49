//! Groups of users, for access rules that name `@group`.
//!
//! Pipeline role: loaded next to the htpasswd file at start and on reload;
//! *authorize* (`auth::acl`) asks [`Groups::contains`] when a rule names a
//! group. Two sources, merged: an Apache htgroup file (the format of
//! `mod_authz_groupfile`'s `AuthGroupFile`) and groups declared in the
//! config. Membership is the union of both; no group nests another.
//!
//! htgroup format, one group per line:
//!
//! ```text
//! # comment
//! team-a: alice bob
//! admins:carol
//! team-a: dave
//! ```
//!
//! A repeated group adds members, as Apache reads it. There are no trailing
//! comments: a member starting with `#` is refused, since no htpasswd user
//! can have such a name (that line would be a comment there).
//!
//! Members are separated by spaces or tabs, so a user name with a blank in
//! it cannot be a member (as in Apache). Every bad line is reported with its
//! number; group and user names are not secret, so messages quote them.

use std::collections::{BTreeMap, BTreeSet, HashMap};

pub use crate::auth::LineError;

/// Group memberships, looked up both ways.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Groups {
    members: BTreeMap<String, BTreeSet<String>>,
    /// The inverse of `members`, kept in step by [`Groups::add`].
    of_user: HashMap<String, BTreeSet<String>>,
}

impl Groups {
    /// Parses an htgroup file, reporting every bad line.
    pub fn parse(text: &str) -> Result<Groups, Vec<LineError>> {
        let mut groups = Groups::default();
        let mut errors = Vec::new();
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        for (idx, raw) in text.split('\n').enumerate() {
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            let content = line.trim_start_matches(is_blank);
            if content.is_empty() || content.starts_with('#') {
                continue;
            }
            match parse_line(content) {
                Ok((group, members)) => groups.add(group, members),
                Err(reason) => errors.push(LineError {
                    line: idx + 1,
                    reason,
                }),
            }
        }
        if errors.is_empty() {
            Ok(groups)
        } else {
            Err(errors)
        }
    }

    /// Adds the groups declared in the config (`group → members`) to these.
    /// All names are checked first; on any error nothing is added, and every
    /// problem is returned, each naming its group.
    pub fn merge(&mut self, declared: &BTreeMap<String, Vec<String>>) -> Result<(), Vec<String>> {
        let mut errors = Vec::new();
        for (group, members) in declared {
            if let Err(reason) = check_group_name(group) {
                errors.push(format!("group {group:?}: {reason}"));
            }
            for member in members {
                if let Err(reason) = check_member_name(member) {
                    errors.push(format!("group {group:?}: member {member:?}: {reason}"));
                }
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        for (group, members) in declared {
            self.add(group, members.iter().map(String::as_str));
        }
        Ok(())
    }

    /// Whether `user` is a member of `group`.
    pub fn contains(&self, group: &str, user: &str) -> bool {
        self.members.get(group).is_some_and(|m| m.contains(user))
    }

    /// Whether `group` is defined at all (possibly with no members).
    pub fn is_defined(&self, group: &str) -> bool {
        self.members.contains_key(group)
    }

    /// Members of `group`, sorted; empty for an unknown group.
    pub fn members(&self, group: &str) -> impl Iterator<Item = &str> {
        self.members
            .get(group)
            .into_iter()
            .flatten()
            .map(String::as_str)
    }

    /// Groups `user` belongs to, sorted; empty for a user in none.
    pub fn groups_of(&self, user: &str) -> impl Iterator<Item = &str> {
        self.of_user
            .get(user)
            .into_iter()
            .flatten()
            .map(String::as_str)
    }

    /// Every defined group, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.members.keys().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    fn add<'m>(&mut self, group: &str, members: impl IntoIterator<Item = &'m str>) {
        let set = self.members.entry(group.to_owned()).or_default();
        for member in members {
            if set.insert(member.to_owned()) {
                self.of_user
                    .entry(member.to_owned())
                    .or_default()
                    .insert(group.to_owned());
            }
        }
    }
}

/// Who belongs to which group, as the access rules ask it: the file and
/// config groups ([`Groups`]), or those plus the groups an identity
/// token's claims gave one user ([`WithClaimGroups`]).
pub trait Membership {
    fn contains(&self, group: &str, user: &str) -> bool;
}

impl Membership for Groups {
    fn contains(&self, group: &str, user: &str) -> bool {
        Groups::contains(self, group, user)
    }
}

/// [`Groups`] plus the groups an OIDC token's claims map to, for its user
/// alone and only while its request or `/token` grant is decided; nothing
/// is added to the shared tables.
#[derive(Debug, Clone, Copy)]
pub struct WithClaimGroups<'a> {
    pub groups: &'a Groups,
    pub user: &'a str,
    pub claimed: &'a [String],
}

impl Membership for WithClaimGroups<'_> {
    fn contains(&self, group: &str, user: &str) -> bool {
        self.groups.contains(group, user)
            || (user == self.user && self.claimed.iter().any(|g| g == group))
    }
}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

fn parse_line(content: &str) -> Result<(&str, impl Iterator<Item = &str>), String> {
    let Some((group, rest)) = content.split_once(':') else {
        return Err("missing ':' after the group name".to_owned());
    };
    let group = group.trim_end_matches(is_blank);
    check_group_name(group).map_err(|r| format!("group {group:?}: {r}"))?;
    let members = rest.split([' ', '\t']).filter(|m| !m.is_empty());
    for member in members.clone() {
        check_member_name(member).map_err(|r| format!("member {member:?}: {r}"))?;
    }
    Ok((group, members))
}

/// Rules name a group as `@name`, so a name must be something that can be
/// written there unambiguously.
fn check_group_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("empty group name");
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("group name contains whitespace or control characters");
    }
    if name.contains([':', '@']) {
        return Err("group name contains ':' or '@'");
    }
    Ok(())
}

/// A member is a user name as the htpasswd file and Basic credentials allow
/// it: no ':' (it ends the user in both) and no control characters.
fn check_member_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("empty user name");
    }
    if name.chars().any(char::is_control) {
        return Err("user name contains control characters");
    }
    if name.contains(':') {
        return Err("user name contains ':'");
    }
    if name.starts_with('#') {
        return Err("user name starts with '#' (no comments after members)");
    }
    if name.starts_with(is_blank) || name.ends_with(is_blank) {
        return Err("user name has leading or trailing whitespace");
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn list<'a>(it: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
        it.collect()
    }

    #[test]
    fn parses_htgroup_files() {
        let text = "# teams\r\n\
                    team-a: alice bob\r\n\
                    \r\n\
                    admins:carol\n\
                    \t# indented comment\n\
                    team-a:\tdave  alice \n\
                    empty:\n\
                    ci : robot";
        let g = Groups::parse(text).unwrap();
        assert_eq!(list(g.names()), ["admins", "ci", "empty", "team-a"]);
        assert_eq!(g.len(), 4);
        assert_eq!(list(g.members("team-a")), ["alice", "bob", "dave"]);
        assert_eq!(list(g.members("admins")), ["carol"]);
        assert_eq!(list(g.members("ci")), ["robot"]);
        assert_eq!(g.members("empty").count(), 0);
        assert!(g.is_defined("empty"));
        assert!(!g.is_defined("nobody"));
        assert_eq!(g.members("nobody").count(), 0);
        assert!(g.contains("team-a", "dave"));
        assert!(!g.contains("team-a", "carol"));
        assert!(!g.contains("Team-a", "alice"), "exact names");
        assert!(!g.contains("team-a", "Alice"), "exact names");
        assert_eq!(list(g.groups_of("alice")), ["team-a"]);
        assert_eq!(list(g.groups_of("carol")), ["admins"]);
        assert_eq!(g.groups_of("mallory").count(), 0);
    }

    #[test]
    fn empty_files_are_empty() {
        for text in ["", "\n", "# only a comment\n", "\u{feff}"] {
            let g = Groups::parse(text).unwrap();
            assert!(g.is_empty(), "{text:?}");
        }
    }

    #[test]
    fn every_bad_line_is_reported() {
        let text = [
            "ok: a",          // 1
            "no colon here",  // 2
            ": a b",          // 3
            "two words: a",   // 4
            "g@x: a",         // 5
            "g: a\u{7}b",     // 6
            "fine: b",        // 7
            "g:x: a",         // 8 (member "x:" has a colon)
            "g: a # comment", // 9
        ]
        .join("\n");
        let errs = Groups::parse(&text).unwrap_err();
        let lines: Vec<usize> = errs.iter().map(|e| e.line).collect();
        assert_eq!(lines, [2, 3, 4, 5, 6, 8, 9]);
        assert_eq!(
            errs[0].to_string(),
            "line 2: missing ':' after the group name"
        );
        assert!(errs[1].reason.contains("empty group name"), "{}", errs[1]);
        assert!(errs[2].reason.contains("whitespace"), "{}", errs[2]);
        assert!(errs[3].reason.contains("'@'"), "{}", errs[3]);
        assert!(errs[4].reason.contains("control"), "{}", errs[4]);
        assert!(errs[5].reason.contains("':'"), "{}", errs[5]);
        assert!(errs[6].reason.contains("'#'"), "{}", errs[6]);
    }

    #[test]
    fn config_groups_merge_with_the_file() {
        let mut g = Groups::parse("team-a: alice\n").unwrap();
        let declared = BTreeMap::from([
            (
                "team-a".to_owned(),
                vec!["bob".to_owned(), "alice".to_owned()],
            ),
            ("ops".to_owned(), vec!["carol".to_owned()]),
            ("nobody".to_owned(), vec![]),
        ]);
        g.merge(&declared).unwrap();
        assert_eq!(list(g.members("team-a")), ["alice", "bob"]);
        assert_eq!(list(g.members("ops")), ["carol"]);
        assert!(g.is_defined("nobody"));
        assert_eq!(list(g.groups_of("alice")), ["team-a"]);
        g.merge(&BTreeMap::from([(
            "ops".to_owned(),
            vec!["alice".to_owned()],
        )]))
        .unwrap();
        assert_eq!(list(g.groups_of("alice")), ["ops", "team-a"]);
        // Config user names may hold spaces (htgroup members cannot).
        g.merge(&BTreeMap::from([("x".to_owned(), vec!["a b".to_owned()])]))
            .unwrap();
        assert!(g.contains("x", "a b"));
    }

    #[test]
    fn bad_config_groups_change_nothing() {
        let mut g = Groups::parse("team-a: alice\n").unwrap();
        let before = g.clone();
        let declared = BTreeMap::from([
            ("good".to_owned(), vec!["bob".to_owned()]),
            ("bad group".to_owned(), vec!["carol".to_owned()]),
            ("@x".to_owned(), vec![]),
            (
                "ok".to_owned(),
                vec![String::new(), "a:b".to_owned(), " pad".to_owned()],
            ),
        ]);
        let errs = g.merge(&declared).unwrap_err();
        assert_eq!(errs.len(), 5, "{errs:?}");
        assert!(errs.iter().any(|e| e.contains("\"bad group\"")));
        assert!(errs.iter().any(|e| e.contains("\"@x\"")));
        assert!(errs
            .iter()
            .any(|e| e.contains("member \"\": empty user name")));
        assert!(errs.iter().any(|e| e.contains("member \"a:b\"")));
        assert!(errs.iter().any(|e| e.contains("member \" pad\"")));
        assert_eq!(g, before);
    }
}
