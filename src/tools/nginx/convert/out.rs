//! The converter's output: `regproxy.toml` text with every value preceded
//! by the nginx directive it came from, the directives regproxy covers by
//! itself listed as comments, and the ones it does not convert collected
//! for stderr.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::time::Duration;

use crate::tools::nginx::Directive;

/// The tables, in the order they are written (`Top` is before any table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Table {
    Top,
    Tls,
    Auth,
    Upstream,
    Forwarding,
    Client,
    Log,
}

impl Table {
    fn header(self) -> Option<&'static str> {
        match self {
            Table::Top => None,
            Table::Tls => Some("[tls]"),
            Table::Auth => Some("[auth]"),
            Table::Upstream => Some("[upstream]"),
            Table::Forwarding => Some("[forwarding]"),
            Table::Client => Some("[client]"),
            Table::Log => Some("[log]"),
        }
    }
}

struct Entry {
    origin: String,
    key: &'static str,
    value: String,
}

/// Everything the conversion decided, in the order it decided it.
#[derive(Default)]
pub(super) struct Out {
    entries: BTreeMap<Table, Vec<Entry>>,
    rules: Vec<String>,
    built_in: Vec<String>,
    /// `FILE:LINE: directive X not converted: why`, for stderr, with where
    /// it points so the list can be sorted.
    not_converted: Vec<(String, usize, String)>,
    /// Directives some handler has dealt with; the rest are reported.
    seen: HashSet<*const Directive>,
}

impl Out {
    /// `table.key = value` (a TOML literal), from the directives in `from`.
    pub(super) fn set(&mut self, table: Table, key: &'static str, value: String, origin: String) {
        let list = self.entries.entry(table).or_default();
        list.retain(|e| e.key != key);
        list.push(Entry { origin, key, value });
    }

    pub(super) fn has(&self, table: Table, key: &str) -> bool {
        self.entries
            .get(&table)
            .is_some_and(|l| l.iter().any(|e| e.key == key))
    }

    /// An `[[access]]` rule.
    pub(super) fn rule(&mut self, origin: &str, who: &[String], actions: &[&str]) {
        let mut r = String::new();
        let _ = writeln!(r, "# {origin}\n[[access]]\nrepository = \"**\"");
        let _ = writeln!(r, "who = {}", list(who));
        let _ = writeln!(r, "actions = {}", list(actions));
        self.rules.push(r);
    }

    /// `d` (and its block) needs nothing in the config: regproxy does this
    /// by itself.
    pub(super) fn built_in(&mut self, d: &Directive, why: &str) {
        self.mark_tree(d);
        self.built_in
            .push(format!("{} {}: {why}", d.at(), summary(d)));
    }

    /// A line for the "built in" list not tied to one directive.
    pub(super) fn note(&mut self, text: String) {
        self.built_in.push(text);
    }

    /// `d` is not converted; says why on stderr.
    pub(super) fn skip(&mut self, d: &Directive, why: &str) {
        self.mark_tree(d);
        self.problem(
            Some(d),
            format!("{}: directive {} not converted: {why}", d.at(), d.name),
        );
    }

    /// A problem, about `d` when given.
    pub(super) fn problem(&mut self, d: Option<&Directive>, text: String) {
        let (file, line) = d.map_or((String::new(), 0), |d| {
            (d.file.display().to_string(), d.line)
        });
        self.not_converted.push((file, line, text));
    }

    /// The problems, by file and line.
    pub(super) fn not_converted(&self) -> Vec<String> {
        let mut v = self.not_converted.clone();
        v.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        v.into_iter().map(|(_, _, t)| t).collect()
    }

    pub(super) fn mark(&mut self, d: &Directive) {
        self.seen.insert(d as *const Directive);
    }

    pub(super) fn mark_tree(&mut self, d: &Directive) {
        self.mark(d);
        for c in d.children() {
            self.mark_tree(c);
        }
    }

    pub(super) fn is_seen(&self, d: &Directive) -> bool {
        self.seen.contains(&(d as *const Directive))
    }

    /// The TOML text.
    pub(super) fn render(&self, source: &str) -> String {
        let mut t = String::new();
        let _ = writeln!(
            t,
            "# regproxy.toml converted from {source} by `regproxy import-nginx`.\n\
             # Every value names the nginx directive it came from; what regproxy\n\
             # does by itself is listed at the end. Check it: regproxy check --config FILE"
        );
        for (table, entries) in &self.entries {
            t.push('\n');
            if let Some(h) = table.header() {
                let _ = writeln!(t, "{h}");
            }
            for e in entries {
                let _ = writeln!(t, "# {}\n{} = {}", e.origin, e.key, e.value);
            }
        }
        for r in &self.rules {
            t.push('\n');
            t.push_str(r);
        }
        if !self.built_in.is_empty() {
            t.push_str("\n# Built into regproxy, nothing to set:\n");
            for b in &self.built_in {
                let _ = writeln!(t, "#   {b}");
            }
        }
        if !self.not_converted.is_empty() {
            t.push_str("\n# Not converted (also printed by import-nginx):\n");
            for n in &self.not_converted() {
                let _ = writeln!(t, "#   {n}");
            }
        }
        t
    }
}

/// `name arg…` on one line, long values cut, for comments.
pub(super) fn summary(d: &Directive) -> String {
    /// Comments stay readable: longer directive texts are cut here.
    const MAX_SUMMARY: usize = 72;
    let mut s = d.name.clone();
    for a in &d.args {
        s.push(' ');
        if a.is_empty() || a.contains([' ', '\t']) {
            let _ = write!(s, "'{a}'");
        } else {
            s.push_str(a);
        }
    }
    let s: String = s.replace(['\n', '\r'], " ");
    if s.chars().count() > MAX_SUMMARY {
        let cut: String = s.chars().take(MAX_SUMMARY - 1).collect();
        format!("{cut}…")
    } else {
        s
    }
}

/// The origin comment for values from several directives.
pub(super) fn origins(ds: &[&Directive]) -> String {
    ds.iter()
        .map(|d| format!("{} {}", d.at(), summary(d)))
        .collect::<Vec<_>>()
        .join("; ")
}

/// A TOML basic string.
pub(super) fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A TOML array of strings.
pub(super) fn list<S: AsRef<str>>(items: &[S]) -> String {
    let inner: Vec<String> = items.iter().map(|s| string(s.as_ref())).collect();
    format!("[{}]", inner.join(", "))
}

/// A duration as regproxy reads it ("900s", "250ms").
pub(super) fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 1000 == 0 {
        string(&format!("{}s", ms / 1000))
    } else {
        string(&format!("{ms}ms"))
    }
}

/// An nginx time value (`900`, `15m`, `1h30m`, `500ms`; bare numbers are
/// seconds), as `ngx_parse_time` reads it.
pub(super) fn nginx_time(s: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit_ms, len) = if rest.starts_with("ms") {
            (1, 2)
        } else {
            let unit = match rest.chars().next() {
                None => 1000,
                Some('s') => 1000,
                Some('m') => 60_000,
                Some('h') => 3_600_000,
                Some('d') => 86_400_000,
                Some('w') => 7 * 86_400_000,
                Some('M') => 30 * 86_400_000,
                Some('y') => 365 * 86_400_000,
                Some(_) => return None,
            };
            (unit, usize::from(!rest.is_empty()))
        };
        rest = &rest[len..];
        total += Duration::from_millis(n.checked_mul(unit_ms)?);
    }
    Some(total)
}

/// An nginx size (`0`, `10m`, `1g`), in bytes.
pub(super) fn nginx_size(s: &str) -> Option<u64> {
    let (num, mult) = match s.char_indices().last()? {
        (i, 'k' | 'K') => (&s[..i], 1 << 10),
        (i, 'm' | 'M') => (&s[..i], 1 << 20),
        (i, 'g' | 'G') => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}
