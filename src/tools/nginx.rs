//! nginx configuration files, read as nginx reads them, for
//! `regproxy import-nginx`.
//!
//! Pipeline role: [`load`] turns an `nginx.conf` (and every file it
//! `include`s) into a tree of [`Directive`]s, each knowing its file and
//! line; [`convert`] turns that tree into `regproxy.toml` text. The lexer
//! is a pure function over text ([`parse_str`]); file access goes through
//! the [`Source`] trait so includes and globs are unit-tested in memory.
//!
//! The token rules follow nginx's own reader (`ngx_conf_read_token` in
//! `src/core/ngx_conf_file.c`): words end at whitespace, `;`, `{` or `}`;
//! a `#` starts a comment only where a word could start; `'` and `"` quote
//! only at the start of a word; a backslash keeps the next character in the
//! word, and the escapes `\"`, `\'`, `\\`, `\t`, `\r`, `\n` are unescaped
//! while any other `\X` keeps its backslash (so regexes survive); `${` does
//! not open a block.

pub mod convert;
mod rewrite;

use std::fmt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// One directive: `name arg…;` or `name arg… { children }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    pub name: String,
    pub args: Vec<String>,
    /// `Some` for a block directive (`http { … }`), even when empty.
    pub block: Option<Vec<Directive>>,
    /// The file it was read from (after `include` expansion).
    pub file: Rc<PathBuf>,
    /// 1-based line of its name.
    pub line: usize,
}

impl Directive {
    /// `FILE:LINE`, how every message points at it.
    pub fn at(&self) -> String {
        format!("{}:{}", self.file.display(), self.line)
    }

    /// The children of a block directive, or nothing.
    pub fn children(&self) -> &[Directive] {
        self.block.as_deref().unwrap_or(&[])
    }
}

/// A problem that stops reading: `FILE:LINE: message` (`FILE: message`
/// when the file itself cannot be read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub file: PathBuf,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            // A file that cannot be read has no line to point at.
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
        }
    }
}

impl std::error::Error for ParseError {}

/// How the reader reaches files: the real file system, or a map in tests.
pub trait Source {
    fn read(&self, path: &Path) -> std::io::Result<String>;
    /// The names of the entries of `dir` (not their paths).
    fn list(&self, dir: &Path) -> std::io::Result<Vec<String>>;
}

/// The file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct Fs;

impl Source for Fs {
    fn read(&self, path: &Path) -> std::io::Result<String> {
        std::fs::read_to_string(path)
    }
    fn list(&self, dir: &Path) -> std::io::Result<Vec<String>> {
        std::fs::read_dir(dir)?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect()
    }
}

/// `regproxy import-nginx`: reads `path` and its includes from the file
/// system and converts them.
pub fn import(
    path: &Path,
    map_paths: Vec<(PathBuf, PathBuf)>,
    resolve: Vec<(String, String)>,
) -> Result<convert::Conversion, ParseError> {
    let tree = load(&Fs, path)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let conf_dir = std::path::absolute(if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    })
    .unwrap_or_else(|_| dir.to_owned());
    let opts = convert::Options {
        conf_dir,
        map_paths,
        resolve,
    };
    Ok(convert::convert(&tree, &path.display().to_string(), &opts))
}

/// `FROM=TO`, for `--map-path` and `--resolve`.
pub fn parse_pair(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((from, to)) if !from.is_empty() && !to.is_empty() => {
            Ok((from.to_owned(), to.to_owned()))
        }
        _ => Err(format!("expected FROM=TO, got {s:?}")),
    }
}

/// An `include` chain deeper than this is a loop, not a layout.
const MAX_INCLUDE_DEPTH: usize = 16;
/// Blocks nested deeper than this are not a config anyone wrote.
const MAX_BLOCK_DEPTH: usize = 64;

/// Reads `path` and every file it includes, expanded in place.
///
/// Relative `include` paths are resolved against the main file's folder,
/// which is nginx's configuration prefix when it runs as `nginx -c FILE`
/// (nginx resolves them against that prefix, not against the including
/// file). A glob matching nothing includes nothing, as in nginx; a plain
/// path that does not exist is an error.
pub fn load(source: &dyn Source, path: &Path) -> Result<Vec<Directive>, ParseError> {
    let prefix = path.parent().unwrap_or(Path::new(".")).to_owned();
    load_file(source, path, &prefix, 0)
}

fn load_file(
    source: &dyn Source,
    path: &Path,
    prefix: &Path,
    depth: usize,
) -> Result<Vec<Directive>, ParseError> {
    let text = source.read(path).map_err(|e| ParseError {
        file: path.to_owned(),
        line: 0,
        message: format!("cannot read: {e}"),
    })?;
    let tree = parse_str(&text, path)?;
    expand_includes(source, tree, prefix, depth)
}

fn expand_includes(
    source: &dyn Source,
    tree: Vec<Directive>,
    prefix: &Path,
    depth: usize,
) -> Result<Vec<Directive>, ParseError> {
    let mut out = Vec::with_capacity(tree.len());
    for mut d in tree {
        if d.name == "include" && d.block.is_none() {
            let fail = |message: String| ParseError {
                file: d.file.as_ref().clone(),
                line: d.line,
                message,
            };
            let [pattern] = d.args.as_slice() else {
                return Err(fail("include takes exactly one file or glob".into()));
            };
            if depth >= MAX_INCLUDE_DEPTH {
                return Err(fail(format!(
                    "include nested deeper than {MAX_INCLUDE_DEPTH} files (a loop?)"
                )));
            }
            let full = prefix.join(pattern);
            let files = if has_glob(pattern) {
                glob(source, &full).map_err(|e| fail(format!("include {pattern}: {e}")))?
            } else {
                vec![full]
            };
            for f in files {
                out.extend(load_file(source, &f, prefix, depth + 1).map_err(|e| {
                    if e.line == 0 {
                        fail(format!("include {pattern}: {}: {}", f.display(), e.message))
                    } else {
                        e
                    }
                })?);
            }
            continue;
        }
        if let Some(children) = d.block.take() {
            d.block = Some(expand_includes(source, children, prefix, depth)?);
        }
        out.push(d);
    }
    Ok(out)
}

fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// The files matching `pattern` (wildcards allowed in any component),
/// sorted as glob(3) sorts them; hidden files only when the component
/// itself starts with a dot.
fn glob(source: &dyn Source, pattern: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut found = vec![PathBuf::new()];
    for comp in pattern.components() {
        let part = comp.as_os_str().to_string_lossy();
        let mut next = Vec::new();
        for base in &found {
            if !has_glob(&part) {
                next.push(base.join(comp));
                continue;
            }
            let dir = if base.as_os_str().is_empty() {
                Path::new(".")
            } else {
                base
            };
            let Ok(mut names) = source.list(dir) else {
                continue;
            };
            names.sort();
            for name in names {
                if (part.starts_with('.') || !name.starts_with('.'))
                    && wildcard_match(part.as_bytes(), name.as_bytes())
                {
                    next.push(base.join(name));
                }
            }
        }
        found = next;
    }
    Ok(found)
}

/// fnmatch(3) without flags: `*`, `?` and `[…]` classes (`!` or `^` negate,
/// ranges with `-`).
fn wildcard_match(pat: &[u8], name: &[u8]) -> bool {
    match pat.split_first() {
        None => name.is_empty(),
        Some((b'*', rest)) => (0..=name.len()).any(|i| wildcard_match(rest, &name[i..])),
        Some((b'?', rest)) => !name.is_empty() && wildcard_match(rest, &name[1..]),
        Some((b'[', rest)) => {
            let Some((&c, name_rest)) = name.split_first() else {
                return false;
            };
            let (negate, body) = match rest.first() {
                Some(b'!' | b'^') => (true, &rest[1..]),
                _ => (false, rest),
            };
            // A `]` first in the class is a member, not its end.
            let Some(end) = body.iter().skip(1).position(|&b| b == b']').map(|p| p + 1) else {
                return c == b'[' && wildcard_match(rest, name_rest);
            };
            let class = &body[..end];
            let mut hit = false;
            let mut i = 0;
            while i < class.len() {
                if i + 2 < class.len() && class[i + 1] == b'-' {
                    hit |= class[i] <= c && c <= class[i + 2];
                    i += 3;
                } else {
                    hit |= class[i] == c;
                    i += 1;
                }
            }
            hit != negate && wildcard_match(&body[end + 1..], name_rest)
        }
        Some((&p, rest)) => name.first() == Some(&p) && wildcard_match(rest, &name[1..]),
    }
}

// === lexer and parser ===

/// What ended a directive's words.
#[derive(Debug, PartialEq, Eq)]
enum Ending {
    Semicolon,
    Open,
    Close,
    Eof,
}

/// One directive's words, with the line of the first.
struct Statement {
    words: Vec<String>,
    line: usize,
    end: Ending,
    /// Line where the statement ended, for errors about its end.
    end_line: usize,
}

struct Lexer<'a> {
    text: &'a [u8],
    pos: usize,
    line: usize,
}

impl Lexer<'_> {
    /// Reads words up to `;`, `{`, `}` or the end of the text.
    fn statement(&mut self, file: &Path) -> Result<Statement, ParseError> {
        let err = |line: usize, message: String| ParseError {
            file: file.to_owned(),
            line,
            message,
        };
        let mut words = Vec::new();
        let mut first_line = 0;
        loop {
            // Between words: whitespace and comments.
            while let Some(&c) = self.text.get(self.pos) {
                match c {
                    b'\n' => {
                        self.line += 1;
                        self.pos += 1;
                    }
                    b' ' | b'\t' | b'\r' => self.pos += 1,
                    b'#' => {
                        while self.text.get(self.pos).is_some_and(|&c| c != b'\n') {
                            self.pos += 1;
                        }
                    }
                    _ => break,
                }
            }
            let end = match self.text.get(self.pos) {
                None => Some(Ending::Eof),
                Some(b';') => Some(Ending::Semicolon),
                Some(b'{') => Some(Ending::Open),
                Some(b'}') => Some(Ending::Close),
                Some(_) => None,
            };
            if let Some(end) = end {
                if end != Ending::Eof {
                    self.pos += 1;
                }
                return Ok(Statement {
                    line: if words.is_empty() {
                        self.line
                    } else {
                        first_line
                    },
                    words,
                    end,
                    end_line: self.line,
                });
            }
            if words.is_empty() {
                first_line = self.line;
            }
            let word_line = self.line;
            let word = match self.text[self.pos] {
                q @ (b'"' | b'\'') => {
                    self.pos += 1;
                    let w = self.quoted(q).ok_or_else(|| {
                        err(word_line, format!("unterminated {} string", q as char))
                    })?;
                    // nginx wants a separator after a closing quote; `)`
                    // is allowed for `if (… "re")`.
                    match self.text.get(self.pos) {
                        None | Some(b' ' | b'\t' | b'\r' | b'\n' | b';' | b'{' | b')') => {}
                        Some(&c) => {
                            return Err(err(
                                self.line,
                                format!("unexpected \"{}\" after a quoted string", c as char),
                            ))
                        }
                    }
                    w
                }
                _ => self.bare(),
            };
            words.push(word);
        }
    }

    /// A quoted word after its opening quote; `None` if the text ends first.
    fn quoted(&mut self, quote: u8) -> Option<String> {
        let mut out = Vec::new();
        loop {
            let c = *self.text.get(self.pos)?;
            self.pos += 1;
            match c {
                c if c == quote => return Some(String::from_utf8_lossy(&out).into_owned()),
                b'\\' => {
                    let n = *self.text.get(self.pos)?;
                    self.pos += 1;
                    if n == b'\n' {
                        self.line += 1;
                    }
                    unescape(&mut out, n);
                }
                b'\n' => {
                    self.line += 1;
                    out.push(c);
                }
                c => out.push(c),
            }
        }
    }

    /// An unquoted word.
    fn bare(&mut self) -> String {
        let mut out = Vec::new();
        while let Some(&c) = self.text.get(self.pos) {
            match c {
                b' ' | b'\t' | b'\r' | b'\n' | b';' | b'}' => break,
                // `${name}` is a variable, not a block.
                b'{' if out.last() != Some(&b'$') => break,
                b'\\' => {
                    self.pos += 1;
                    match self.text.get(self.pos) {
                        Some(&n) => {
                            self.pos += 1;
                            if n == b'\n' {
                                self.line += 1;
                            }
                            unescape(&mut out, n);
                        }
                        None => out.push(b'\\'),
                    }
                }
                b'{' => {
                    // `${`: the variable name runs to its `}`.
                    while let Some(&c) = self.text.get(self.pos) {
                        out.push(c);
                        self.pos += 1;
                        if c == b'}' {
                            break;
                        }
                    }
                }
                c => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// nginx's unescaping of `\n` after a backslash: six escapes, the rest
/// keep their backslash.
fn unescape(out: &mut Vec<u8>, n: u8) {
    match n {
        b'"' | b'\'' | b'\\' => out.push(n),
        b't' => out.push(b'\t'),
        b'r' => out.push(b'\r'),
        b'n' => out.push(b'\n'),
        _ => {
            out.push(b'\\');
            out.push(n);
        }
    }
}

/// Parses one file's text (no include expansion).
pub fn parse_str(text: &str, file: &Path) -> Result<Vec<Directive>, ParseError> {
    let file = Rc::new(file.to_owned());
    let mut lexer = Lexer {
        text: text.as_bytes(),
        pos: 0,
        line: 1,
    };
    let (tree, end) = parse_block(&mut lexer, &file, 0)?;
    match end {
        Ending::Eof => Ok(tree),
        _ => Err(ParseError {
            file: file.as_ref().clone(),
            line: lexer.line,
            message: "unexpected \"}\"".into(),
        }),
    }
}

/// Directives up to the `}` closing this block (or the end of the text at
/// the top); returns how it ended.
fn parse_block(
    lexer: &mut Lexer,
    file: &Rc<PathBuf>,
    depth: usize,
) -> Result<(Vec<Directive>, Ending), ParseError> {
    let err = |line: usize, message: &str| ParseError {
        file: file.as_ref().clone(),
        line,
        message: message.to_owned(),
    };
    let mut out = Vec::new();
    loop {
        let st = lexer.statement(file)?;
        let mut words = st.words.into_iter();
        let name = words.next();
        match (st.end, name) {
            (Ending::Eof, None) => {
                if depth > 0 {
                    return Err(err(st.end_line, "unexpected end of file, expecting \"}\""));
                }
                return Ok((out, Ending::Eof));
            }
            (Ending::Eof, Some(_)) => {
                return Err(err(
                    st.end_line,
                    "unexpected end of file, expecting \";\" or \"}\"",
                ))
            }
            (Ending::Close, None) => {
                if depth == 0 {
                    return Err(err(st.end_line, "unexpected \"}\""));
                }
                return Ok((out, Ending::Close));
            }
            (Ending::Close, Some(_)) => {
                return Err(err(st.line, "directive is not terminated by \";\""))
            }
            (Ending::Semicolon, None) => return Err(err(st.end_line, "unexpected \";\"")),
            (Ending::Open, None) => return Err(err(st.end_line, "unexpected \"{\"")),
            (Ending::Semicolon, Some(name)) => out.push(Directive {
                name,
                args: words.collect(),
                block: None,
                file: file.clone(),
                line: st.line,
            }),
            (Ending::Open, Some(name)) => {
                if depth + 1 > MAX_BLOCK_DEPTH {
                    return Err(err(st.line, "blocks nested too deep"));
                }
                let (children, _) = parse_block(lexer, file, depth + 1)?;
                out.push(Directive {
                    name,
                    args: words.collect(),
                    block: Some(children),
                    file: file.clone(),
                    line: st.line,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests;
