//! Access rules: who may do what to which repository.
//!
//! Pipeline role: *authorize*. After `route::classify` has named the
//! repository and action and *authenticate* has settled the [`Identity`],
//! [`Acl::decide`] answers [`Decision::Allow`] (forward),
//! [`Decision::NeedAuth`] (401 with the Basic challenge) or
//! [`Decision::Deny`] (403 `DENIED`). Pure and cheap: a scan of the rules.
//!
//! Semantics:
//! - Rules are ordered; for one identity and one repository, the **first
//!   rule whose pattern and `who` both match** decides: the request is
//!   allowed if that rule lists the action, denied if not (so a rule with
//!   `actions = []` is an explicit deny). No matching rule: denied.
//! - `who` entries: a user name, `@group`, `authenticated` (any user with
//!   valid credentials) and `anonymous` (a request without credentials).
//!   Group membership is asked through `groups::Membership`: the group
//!   files and config, plus, for a user an OIDC identity token mapped, the
//!   groups its claims gave (`groups::WithClaimGroups`).
//!   A user is also allowed whatever an anonymous request would be:
//!   credentials never take rights away, since a client could always leave
//!   them out. So `anonymous` rules need not be repeated for users, and an
//!   explicit deny cannot stop a user from what anonymous may do.
//! - Patterns: an exact name; `*` is exactly one path segment; `**` (only
//!   as the last segment) is one or more segments. `team-a/**` matches
//!   `team-a/x` and `team-a/x/y`, not `team-a` itself; `*` alone matches
//!   single-segment names; `**` alone matches every repository and is the
//!   only pattern that matches the catalog.
//! - A request needs every (repository, action) of its target: a blob mount
//!   needs push on the target and pull on the source.
//! - An anonymous request that is not allowed gets 401, always, even where
//!   no credentials could help: a client without credentials cannot be told
//!   apart from one that has not sent them yet, and a 403 would tell an
//!   anonymous client which repositories the rules single out. A user that
//!   is not allowed gets 403. (Credentials sent but wrong are the caller's
//!   401, whatever the rules say, as nginx does.)
//! - `GET /v2/` ([`Target::Base`]): allowed for every user. For anonymous
//!   requests it is 401 whenever any rule grants something to someone other
//!   than `anonymous`, and 200 only when credentials could never matter.
//!   Clients learn from this one answer whether to send credentials:
//!   docker, skopeo and containers/image take the challenge from the `/v2/`
//!   ping alone, so a 200 there would stop them from ever sending
//!   credentials, and every push and private pull would fail. The price: on
//!   a registry that mixes anonymous and authenticated rules, the classic
//!   docker engine cannot pull anonymously (it wants credentials after a
//!   401 ping; `docker login` fixes it); skopeo/podman send empty Basic
//!   credentials (`Og==`, which the caller should take as anonymous), and
//!   containerd does not ping, so both pull public repositories without an
//!   account.

use std::collections::BTreeSet;
use std::fmt;

use crate::auth::groups::{Groups, Membership};
use crate::route::{is_path_component, Action, Target, MAX_NAME_LEN};

/// Who is asking, once authentication is settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity<'a> {
    /// No credentials were sent.
    Anonymous,
    /// Credentials were sent and verified for this user.
    User(&'a str),
}

/// What to do with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Forward it.
    Allow,
    /// 401 with the Basic challenge: anonymous and not allowed.
    NeedAuth,
    /// 403 `DENIED`: authenticated and not allowed.
    Deny,
}

/// One `who` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Who {
    Anonymous,
    Authenticated,
    User(String),
    Group(String),
}

impl Who {
    fn matches<M: Membership + ?Sized>(&self, id: Identity<'_>, groups: &M) -> bool {
        match (self, id) {
            (Who::Anonymous, Identity::Anonymous) => true,
            (Who::Authenticated, Identity::User(_)) => true,
            (Who::User(u), Identity::User(name)) => u == name,
            (Who::Group(g), Identity::User(name)) => groups.contains(g, name),
            _ => false,
        }
    }
}

impl fmt::Display for Who {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Who::Anonymous => f.write_str("anonymous"),
            Who::Authenticated => f.write_str("authenticated"),
            Who::User(u) => f.write_str(u),
            Who::Group(g) => write!(f, "@{g}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// `*`
    One,
}

/// A parsed repository pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    source: String,
    /// `**` alone: every repository and the catalog.
    everything: bool,
    segments: Vec<Segment>,
    /// Ends in `/**`: one or more further segments.
    deeper: bool,
}

impl Pattern {
    fn everything() -> Pattern {
        Pattern {
            source: "**".to_owned(),
            everything: true,
            segments: Vec::new(),
            deeper: false,
        }
    }

    fn parse(source: &str) -> Result<Pattern, String> {
        let bad = |why: &str| Err(format!("repository {source:?}: {why}"));
        if source.is_empty() {
            return bad("empty pattern");
        }
        if source == "**" {
            return Ok(Pattern::everything());
        }
        let parts: Vec<&str> = source.split('/').collect();
        let mut segments = Vec::with_capacity(parts.len());
        let mut deeper = false;
        for (i, part) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            match *part {
                "" => return bad("empty segment (a leading, trailing or doubled '/')"),
                "**" if last => deeper = true,
                "**" => return bad("'**' may only be the last segment"),
                "*" => segments.push(Segment::One),
                p if p.contains('*') => {
                    return bad(&format!(
                        "segment {p:?}: '*' must be a whole segment ('*' or '**'); \
                         partial globs are not supported"
                    ))
                }
                p if !is_path_component(p) => {
                    return bad(&format!(
                        "segment {p:?} can never match: repository names are lower-case \
                         letters and digits, separated by '.', '_', '__' or dashes"
                    ))
                }
                p => segments.push(Segment::Literal(p.to_owned())),
            }
        }
        // `*` stands for at least one character, `/**` for at least `/x`.
        let shortest = if deeper {
            source.len().saturating_sub(1)
        } else {
            source.len()
        };
        if shortest > MAX_NAME_LEN {
            return bad("longer than any repository name can be (255 characters)");
        }
        Ok(Pattern {
            source: source.to_owned(),
            everything: false,
            segments,
            deeper,
        })
    }

    /// `repository` is `None` for the catalog.
    fn matches(&self, repository: Option<&str>) -> bool {
        if self.everything {
            return true;
        }
        let Some(name) = repository else {
            return false;
        };
        let mut parts = name.split('/');
        for segment in &self.segments {
            let Some(part) = parts.next() else {
                return false;
            };
            if let Segment::Literal(lit) = segment {
                if lit != part {
                    return false;
                }
            }
        }
        let rest = parts.count();
        if self.deeper {
            rest >= 1
        } else {
            rest == 0
        }
    }
}

/// One access rule. Built with [`Rule::new`] from the config's strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pattern: Pattern,
    who: Vec<Who>,
    actions: BTreeSet<Action>,
}

impl Rule {
    /// Validates one `[[access]]` entry. Errors name the offending value
    /// and say what would be valid; the caller adds where the entry is.
    ///
    /// - `pattern`: see the module docs. Literal segments must be valid
    ///   repository path components, so a pattern can never silently match
    ///   nothing.
    /// - `who`: non-empty; `anonymous`, `authenticated`, `@group` or a user
    ///   name (no ':' or control characters). Case variants of the two
    ///   keywords are refused as likely typos.
    /// - `actions`: `pull`, `push`, `delete`, `catalog`; empty means deny.
    ///   `catalog` is only valid on `**`; `push` requires `pull` (clients
    ///   read manifests and blobs while pushing, and with the first match
    ///   deciding, no later rule can add it).
    pub fn new(pattern: &str, who: Vec<String>, actions: Vec<String>) -> Result<Rule, String> {
        let pattern = Pattern::parse(pattern)?;
        if who.is_empty() {
            return Err("who is empty: the rule would apply to nobody".to_owned());
        }
        let who = who
            .into_iter()
            .map(|w| parse_who(&w))
            .collect::<Result<Vec<_>, _>>()?;
        let mut set = BTreeSet::new();
        for name in &actions {
            let Some(action) = Action::from_name(name) else {
                return Err(format!(
                    "unknown action {name:?} (actions are pull, push, delete, catalog)"
                ));
            };
            set.insert(action);
        }
        if set.contains(&Action::Catalog) && !pattern.everything {
            return Err(format!(
                "repository {:?}: catalog lists every repository, so it can only be \
                 granted on \"**\"",
                pattern.source
            ));
        }
        if set.contains(&Action::Push) && !set.contains(&Action::Pull) {
            return Err(
                "push without pull: clients read manifests and blobs while pushing, and \
                 the first matching rule decides; write actions = [\"pull\", \"push\"]"
                    .to_owned(),
            );
        }
        Ok(Rule {
            pattern,
            who,
            actions: set,
        })
    }

    pub fn pattern(&self) -> &str {
        &self.pattern.source
    }

    /// The actions this rule grants, in [`Action`] order.
    pub fn actions(&self) -> impl Iterator<Item = Action> + '_ {
        self.actions.iter().copied()
    }

    fn applies<M: Membership + ?Sized>(
        &self,
        id: Identity<'_>,
        groups: &M,
        repository: Option<&str>,
    ) -> bool {
        self.pattern.matches(repository) && self.who.iter().any(|w| w.matches(id, groups))
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let who: Vec<String> = self.who.iter().map(ToString::to_string).collect();
        let actions: Vec<&str> = self.actions.iter().map(|a| a.as_str()).collect();
        write!(
            f,
            "{} who=[{}] actions=[{}]",
            self.pattern.source,
            who.join(", "),
            actions.join(", ")
        )
    }
}

fn parse_who(entry: &str) -> Result<Who, String> {
    match entry {
        "anonymous" => return Ok(Who::Anonymous),
        "authenticated" => return Ok(Who::Authenticated),
        _ => {}
    }
    for keyword in ["anonymous", "authenticated"] {
        if entry.eq_ignore_ascii_case(keyword) {
            return Err(format!(
                "who {entry:?}: did you mean {keyword:?}? (keywords are lower case)"
            ));
        }
    }
    if let Some(group) = entry.strip_prefix('@') {
        if group.is_empty()
            || group.contains([':', '@'])
            || group.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(format!(
                "who {entry:?}: a group name is non-empty, without whitespace, ':' or '@'"
            ));
        }
        return Ok(Who::Group(group.to_owned()));
    }
    if entry.is_empty()
        || entry.contains(':')
        || entry.chars().any(char::is_control)
        || entry.trim() != entry
    {
        return Err(format!(
            "who {entry:?}: expected \"anonymous\", \"authenticated\", \"@group\" or a user \
             name (non-empty, no ':', control characters or surrounding blanks)"
        ));
    }
    Ok(Who::User(entry.to_owned()))
}

/// The ordered rule list.
#[derive(Debug, Clone, Default)]
pub struct Acl {
    rules: Vec<Rule>,
    /// Some rule grants something to someone other than `anonymous`, so an
    /// anonymous client must be told to send credentials.
    credentials_matter: bool,
}

impl Acl {
    pub fn new(rules: Vec<Rule>) -> Acl {
        let credentials_matter = rules
            .iter()
            .any(|r| !r.actions.is_empty() && r.who.iter().any(|w| !matches!(w, Who::Anonymous)));
        Acl {
            rules,
            credentials_matter,
        }
    }

    /// The rules the core issue's `push_users` stands for, so a config
    /// without `[[access]]` keeps its behaviour:
    /// - `None`: every authenticated user may do everything;
    /// - `Some(users)`: those users may do everything, every other
    ///   authenticated user may pull and list the catalog (an empty list
    ///   makes the registry read-only).
    ///
    /// Names are taken as user names even if they read like keywords. One
    /// difference from the old method-based check: reading an upload's
    /// status is now push, as every other upload request.
    pub fn from_push_users(push_users: Option<Vec<String>>) -> Acl {
        let all: BTreeSet<Action> = Action::ALL.into_iter().collect();
        let mut rules = Vec::new();
        match push_users {
            None => rules.push(Rule {
                pattern: Pattern::everything(),
                who: vec![Who::Authenticated],
                actions: all,
            }),
            Some(users) => {
                if !users.is_empty() {
                    rules.push(Rule {
                        pattern: Pattern::everything(),
                        who: users.into_iter().map(Who::User).collect(),
                        actions: all,
                    });
                }
                rules.push(Rule {
                    pattern: Pattern::everything(),
                    who: vec![Who::Authenticated],
                    actions: [Action::Pull, Action::Catalog].into_iter().collect(),
                });
            }
        }
        Acl::new(rules)
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Whether an anonymous `GET /v2/` gets 200 rather than 401: only when
    /// no rule grants anything to anyone but `anonymous`.
    pub fn anonymous_ping_allowed(&self) -> bool {
        !self.credentials_matter
    }

    /// The decision for one classified request.
    pub fn decide<M: Membership + ?Sized>(
        &self,
        id: Identity<'_>,
        groups: &M,
        target: &Target,
    ) -> Decision {
        let allowed = match target {
            Target::Base => match id {
                Identity::User(_) => true,
                Identity::Anonymous => !self.credentials_matter,
            },
            _ => target
                .needs()
                .all(|(repository, action)| self.allows(id, groups, repository, action)),
        };
        match (allowed, id) {
            (true, _) => Decision::Allow,
            (false, Identity::Anonymous) => Decision::NeedAuth,
            (false, Identity::User(_)) => Decision::Deny,
        }
    }

    /// Whether `id` may do `action` on `repository` (`None`: the catalog):
    /// the first rule that applies to `id` decides, and a user also gets
    /// what an anonymous request would.
    pub fn allows<M: Membership + ?Sized>(
        &self,
        id: Identity<'_>,
        groups: &M,
        repository: Option<&str>,
        action: Action,
    ) -> bool {
        let first_grants = |id: Identity<'_>| {
            self.rules
                .iter()
                .find(|r| r.applies(id, groups, repository))
                .is_some_and(|r| r.actions.contains(&action))
        };
        first_grants(id) || (id != Identity::Anonymous && first_grants(Identity::Anonymous))
    }

    /// One message per rule naming a group that `groups` does not define:
    /// such a rule would silently match nobody. Rules count from 1.
    pub fn undefined_groups(&self, groups: &Groups) -> Vec<String> {
        let mut out = Vec::new();
        for (i, rule) in self.rules.iter().enumerate() {
            for who in &rule.who {
                if let Who::Group(g) = who {
                    if !groups.is_defined(g) {
                        out.push(format!(
                            "access rule {} ({}): group @{g} is not defined",
                            i + 1,
                            rule.pattern.source
                        ));
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
