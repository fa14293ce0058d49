//! The user database: an Apache/nginx `htpasswd` file.
//!
//! Pipeline role: the second half of *authenticate*. Once the `Authorization`
//! header has been decoded into a user and password (`crate::auth::basic`),
//! the user is looked up here and the password checked with
//! [`PasswordHash::verify`]. Parsing happens once at load/reload; verifying
//! is deliberately slow (bcrypt), so the caller runs it off the event loop
//! and caches the outcome.
//!
//! Semantics follow nginx's `auth_basic_user_file`: one `user:hash` per line,
//! `#` comments, and the first line for a user wins. Unlike nginx, the whole
//! file is validated up front so a typo is reported at load with its line
//! number instead of surfacing later as a user who can never log in.

use std::collections::HashMap;
use std::fmt;

use base64::engine::general_purpose::NO_PAD;
use base64::engine::GeneralPurpose;
use base64::Engine as _;

/// Lowest bcrypt cost the bcrypt algorithm defines.
pub const MIN_BCRYPT_COST: u32 = 4;
/// Highest bcrypt cost the bcrypt algorithm defines.
pub const MAX_BCRYPT_COST: u32 = 31;
/// `$2y$` + two cost digits + `$` + 22 salt chars + 31 digest chars.
pub const BCRYPT_HASH_LEN: usize = 60;
/// Salt and digest together, in bcrypt's base64 alphabet.
const BCRYPT_SALT_AND_DIGEST_LEN: usize = 53;
/// bcrypt's own alphabet (`./A-Za-z0-9`), unpadded. Built here rather than
/// borrowed from the bcrypt crate, whose engine is from another base64
/// major version.
const BCRYPT_B64: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::BCRYPT, NO_PAD);

/// A stored password hash. More schemes (apr1, SHA, SSHA, crypt) are
/// expected; callers should go through [`verify`](Self::verify) and
/// [`scheme`](Self::scheme) rather than match on the variant.
#[derive(Clone, PartialEq, Eq)]
pub enum PasswordHash {
    /// A 60-character `$2a$`/`$2b$`/`$2y$` modular-crypt string.
    Bcrypt(String),
}

impl PasswordHash {
    /// Checks `password` against the hash. Slow by design (bcrypt at the
    /// file's cost, typically 50-250 ms): never call it on an event loop.
    ///
    /// Like every bcrypt implementation, only the first 72 bytes of the
    /// password take part.
    pub fn verify(&self, password: &[u8]) -> bool {
        match self {
            // A hash that fails to parse cannot match anything; `parse`
            // already refuses such hashes, so this only guards values built
            // by hand.
            PasswordHash::Bcrypt(hash) => bcrypt::verify(password, hash).unwrap_or(false),
        }
    }

    /// Short scheme name for logs and metrics.
    pub fn scheme(&self) -> &'static str {
        match self {
            PasswordHash::Bcrypt(_) => "bcrypt",
        }
    }

    /// The bcrypt work factor, so the caller can give [`dummy_hash`] the
    /// same cost as the real entries.
    pub fn bcrypt_cost(&self) -> Option<u32> {
        match self {
            PasswordHash::Bcrypt(hash) => hash.get(4..6)?.parse().ok(),
        }
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A leaked hash can be attacked offline; keep it out of logs.
        match self {
            PasswordHash::Bcrypt(_) => f
                .debug_struct("Bcrypt")
                .field("cost", &self.bcrypt_cost())
                .finish_non_exhaustive(),
        }
    }
}

/// A parsed htpasswd file.
#[derive(Debug, Clone, Default)]
pub struct Htpasswd {
    entries: HashMap<String, PasswordHash>,
}

/// One rejected line. `reason` is one of this module's fixed messages;
/// nothing from the line is copied into it, so it is safe to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// 1-based, as editors count.
    pub line: usize,
    pub reason: String,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

impl std::error::Error for LineError {}

impl Htpasswd {
    /// Parses the whole file, reporting every bad line rather than the first,
    /// so an operator fixes the file in one pass.
    pub fn parse(text: &str) -> Result<Htpasswd, Vec<LineError>> {
        let mut entries = HashMap::new();
        let mut errors = Vec::new();
        // Windows editors may prepend a BOM; left in, it would silently
        // become part of the first user's name.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        // Only a CR right before LF ends a line; a stray CR elsewhere stays
        // in the line and gets reported rather than silently dropped.
        for (idx, raw) in text.split('\n').enumerate() {
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            match parse_line(line) {
                Ok(None) => {}
                Ok(Some((user, hash))) => {
                    // nginx scans top to bottom and stops at the first match,
                    // so a later duplicate is dead: keep the first.
                    entries.entry(user.to_owned()).or_insert(hash);
                }
                Err(reason) => errors.push(LineError {
                    line: idx + 1,
                    reason: reason.to_owned(),
                }),
            }
        }
        if errors.is_empty() {
            Ok(Htpasswd { entries })
        } else {
            Err(errors)
        }
    }

    pub fn get(&self, user: &str) -> Option<&PasswordHash> {
        self.entries.get(user)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// In no particular order.
    pub fn users(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }
}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// `Ok(None)` for lines that carry no entry. Errors are static strings so
/// no byte of the line can leak into them.
fn parse_line(line: &str) -> Result<Option<(&str, PasswordHash)>, &'static str> {
    let content = line.trim_start_matches(is_blank);
    if content.is_empty() || content.starts_with('#') {
        return Ok(None);
    }
    let Some((user, rest)) = line.split_once(':') else {
        return Err("missing ':' between user and hash");
    };
    if user.is_empty() {
        return Err("empty user name");
    }
    // nginx would keep the whitespace and the user could then only log in
    // with it typed verbatim; that is always an editing slip, so say so.
    if user.starts_with(is_blank) || user.ends_with(is_blank) {
        return Err("user name has leading or trailing whitespace");
    }
    // Such a user could never pass `basic::decode`, which rejects control
    // characters; an entry nobody can use is an error worth reporting.
    if user.chars().any(char::is_control) {
        return Err("user name contains control characters");
    }
    // Some tools append `:comment` fields; the hash never contains ':'.
    // Trailing blanks are editor residue and never part of a hash.
    let hash = rest
        .split_once(':')
        .map_or(rest, |(h, _comment)| h)
        .trim_end_matches(is_blank);
    if hash.is_empty() {
        return Err("empty password hash");
    }
    parse_hash(hash).map(|h| Some((user, h)))
}

fn parse_hash(hash: &str) -> Result<PasswordHash, &'static str> {
    const BCRYPT_PREFIXES: [&str; 3] = ["$2y$", "$2b$", "$2a$"];
    if BCRYPT_PREFIXES.iter().any(|p| hash.starts_with(p)) {
        validate_bcrypt(hash)?;
        return Ok(PasswordHash::Bcrypt(hash.to_owned()));
    }
    Err(unsupported_scheme(hash))
}

/// Builds an "unsupported" reason at compile time: keeping every reason a
/// `&'static str` means no byte of the input can ever be formatted into one.
macro_rules! unsupported {
    ($scheme:literal) => {
        concat!(
            "unsupported hash scheme",
            $scheme,
            " (only bcrypt $2y$/$2b$/$2a$ is supported)"
        )
    };
}

/// Names the scheme when we recognise it (from a fixed table, never from the
/// input) so the operator knows what to regenerate with `htpasswd -B`.
fn unsupported_scheme(hash: &str) -> &'static str {
    const KNOWN: [(&str, &str); 8] = [
        (
            "$2x$",
            unsupported!(" bcrypt $2x$, a legacy variant for buggy hashes"),
        ),
        ("$apr1$", unsupported!(" apr1-md5")),
        ("$1$", unsupported!(" md5-crypt")),
        ("$5$", unsupported!(" sha256-crypt")),
        ("$6$", unsupported!(" sha512-crypt")),
        ("{SHA}", unsupported!(" SHA-1")),
        ("{SSHA}", unsupported!(" salted SHA-1")),
        ("{PLAIN}", unsupported!(" plaintext")),
    ];
    KNOWN
        .iter()
        .find(|(prefix, _)| hash.starts_with(prefix))
        .map_or(unsupported!(""), |(_, reason)| reason)
}

fn is_bcrypt_b64(b: u8) -> bool {
    b == b'.' || b == b'/' || b.is_ascii_alphanumeric()
}

/// Checks shape at load so `verify` can never fail on a loaded hash: a hash
/// that bcrypt rejects at verify time would just lock the user out silently.
fn validate_bcrypt(hash: &str) -> Result<(), &'static str> {
    let b = hash.as_bytes();
    if b.len() != BCRYPT_HASH_LEN {
        return Err("malformed bcrypt hash: wrong length (a bcrypt hash is 60 characters)");
    }
    let (cost, sep, tail) = (&b[4..6], b[6], &b[7..]);
    if !cost.iter().all(u8::is_ascii_digit) || sep != b'$' {
        return Err("malformed bcrypt hash: expected two cost digits after the prefix");
    }
    let cost = u32::from(cost[0] - b'0') * 10 + u32::from(cost[1] - b'0');
    if !(MIN_BCRYPT_COST..=MAX_BCRYPT_COST).contains(&cost) {
        return Err("malformed bcrypt hash: cost outside 04..31");
    }
    debug_assert_eq!(tail.len(), BCRYPT_SALT_AND_DIGEST_LEN);
    if !tail.iter().copied().all(is_bcrypt_b64) {
        return Err("malformed bcrypt hash: salt or digest has characters outside [./A-Za-z0-9]");
    }
    // The last salt and digest characters carry unused low bits; bcrypt
    // tools always leave them zero and the bcrypt crate refuses anything
    // else. Ask the crate itself so load and verify can never disagree.
    if hash.parse::<bcrypt::HashParts>().is_err() {
        return Err("malformed bcrypt hash: salt or digest is not canonical bcrypt base64");
    }
    Ok(())
}

/// A hash whose verify always fails but costs the same as a real one, so an
/// unknown user is not revealed by timing.
///
/// Compute once (it runs bcrypt at `cost`) and cache it. `cost` should be the
/// cost of the real entries (see [`PasswordHash::bcrypt_cost`]); values
/// outside 4..=31 are clamped.
///
/// "Always fails" holds because the digest is bcrypt of a fresh 128-bit
/// random secret that is never stored: matching it means finding a bcrypt
/// preimage.
pub fn dummy_hash(cost: u32) -> PasswordHash {
    let cost = cost.clamp(MIN_BCRYPT_COST, MAX_BCRYPT_COST);
    let secret = zeroize::Zeroizing::new(random_16());
    let salt = random_16();
    // The raw primitive is infallible for a clamped cost and a 1..=72 byte
    // input, unlike the crate's Result-returning wrappers.
    let digest = bcrypt::bcrypt(cost, salt, secret.as_slice());
    // bcrypt keeps 23 of the 24 output bytes, as every implementation does.
    let hash = format!(
        "$2y${cost:02}${}{}",
        BCRYPT_B64.encode(salt),
        BCRYPT_B64.encode(&digest[..23])
    );
    PasswordHash::Bcrypt(hash)
}

/// 16 bytes from the OS CSPRNG without another dependency: bcrypt's own
/// random salt is exactly that. Should the OS refuse (practically never),
/// fall back to std's per-process random SipHash keys, still unpredictable
/// from outside.
fn random_16() -> [u8; 16] {
    if let Ok(parts) = bcrypt::hash_with_result(b"", MIN_BCRYPT_COST) {
        return parts.get_salt_raw();
    }
    use std::hash::{BuildHasher, Hasher};
    let state = std::collections::hash_map::RandomState::new();
    let mut out = [0u8; 16];
    for (i, chunk) in out.chunks_exact_mut(8).enumerate() {
        let mut h = state.build_hasher();
        h.write_usize(i);
        chunk.copy_from_slice(&h.finish().to_le_bytes());
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    // `htpasswd -Bbn -C 5 alice secret` (Apache htpasswd 2.4, apache2-utils).
    const ALICE: &str = "alice:$2y$05$aGKQqWAaC4Q3aZMj5949MOq5T2YK0NJ7IRh33ruAm9dp5o5tfqvWi";
    const ALICE_HASH: &str = "$2y$05$aGKQqWAaC4Q3aZMj5949MOq5T2YK0NJ7IRh33ruAm9dp5o5tfqvWi";
    // `htpasswd -Bbn -C 5 bob 'pa:ss word'`
    const BOB: &str = "bob:$2y$05$TdcjkMIQyGp4gx4px3uQBulPEhb1sz02txkS/ESwQED0F6xm95s.6";
    // `htpasswd -Bbn -C 4 carol hunter2`
    const CAROL: &str = "carol:$2y$04$dy8gLnRv9845wg8Df./Us.wRor8X9N40QiG42qFL/fA09jzRoSsHu";

    // Test vectors from Openwall crypt_blowfish (wrapper.c), each confirmed
    // with `htpasswd -vb FILE USER PASSWORD`.
    const CB_UU: &str = "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW"; // "U*U"
    const CB_72: &str = "$2a$05$abcdefghijklmnopqrstuu5s2v8.iXieOjg/.AySBTTZIIVFJeBui";
    const CB_72_PW: &[u8] =
        b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789chars after 72 are ignored";
    const CB_A3: &str = "$2y$05$/OK.fbVrR/bpIqNJ5ianF.Sa7shbm4.OzKpvFnX1pQLmQW96oUlCq"; // "\xa3"

    // Other schemes, made by the same htpasswd: -m, -s, -2, -5, -d, -p.
    const DAVE_APR1: &str = "dave:$apr1$HRIsn3nP$Y6tKzox320eJmP6PjdD3s.";
    const ERIN_SHA: &str = "erin:{SHA}EfatjsUqKYSrqv18O1FlA3hcIHI=";
    const GINA_SHA256: &str =
        "gina:$5$dT8KLsgU2M5A9xdU$QmUu3aK9xRJKqRaW/iPvDxkeb4oHW.21QywT206n4S.";
    const HANK_SHA512: &str = "hank:$6$mHpDHg7Q4V8EkCYQ$hwmX0rD7NAIi.REdYN/Nz3zCbfVEegQ43ajV3kBeKmW//Kvd5VG6AHB0rV00Weiy9dJwOhhHrqEtgnAhAJ3pp/";
    const IVAN_CRYPT: &str = "ivan:T3WUFVjKgNR3U";
    const FRANK_PLAIN: &str = "frank:x";

    fn one_error(text: &str) -> LineError {
        let errs = Htpasswd::parse(text).unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        errs.into_iter().next().unwrap()
    }

    fn bcrypt_hash(password: &[u8], version: bcrypt::Version) -> String {
        bcrypt::hash_with_result(password, 4)
            .unwrap()
            .format_for_version(version)
    }

    #[test]
    fn parses_htpasswd_output_and_verifies() {
        let db = Htpasswd::parse(&format!("{ALICE}\n{BOB}\n{CAROL}\n")).unwrap();
        assert_eq!(db.len(), 3);
        assert!(!db.is_empty());
        let alice = db.get("alice").unwrap();
        assert_eq!(alice, &PasswordHash::Bcrypt(ALICE_HASH.to_owned()));
        assert!(alice.verify(b"secret"));
        assert!(!alice.verify(b"Secret"));
        assert!(!alice.verify(b"secret "));
        assert!(!alice.verify(b""));
        let bob = db.get("bob").unwrap();
        assert!(bob.verify(b"pa:ss word"));
        assert!(!bob.verify(b"pa"));
        assert!(db.get("carol").unwrap().verify(b"hunter2"));
        assert!(db.get("mallory").is_none());
        // Lookup is exact, as in nginx.
        assert!(db.get("Alice").is_none());
    }

    #[test]
    fn users_lists_each_user_once() {
        let db = Htpasswd::parse(&format!("{ALICE}\n{BOB}\n{ALICE}\n")).unwrap();
        let mut users: Vec<&str> = db.users().collect();
        users.sort_unstable();
        assert_eq!(users, ["alice", "bob"]);
    }

    #[test]
    fn crypt_blowfish_vectors() {
        let uu = PasswordHash::Bcrypt(CB_UU.to_owned());
        assert!(uu.verify(b"U*U"));
        assert!(!uu.verify(b"U*U*"));
        // Bytes past 72 are ignored by bcrypt everywhere, including Apache.
        let long = PasswordHash::Bcrypt(CB_72.to_owned());
        assert!(long.verify(CB_72_PW));
        assert!(long.verify(&CB_72_PW[..72]));
        assert!(!long.verify(&CB_72_PW[..71]));
        // Non-UTF-8 password bytes.
        let a3 = PasswordHash::Bcrypt(CB_A3.to_owned());
        assert!(a3.verify(b"\xa3"));
        assert!(!a3.verify("£".as_bytes()));
        // All three parse as file entries too.
        let text = format!("a:{CB_UU}\nb:{CB_72}\nc:{CB_A3}");
        assert_eq!(Htpasswd::parse(&text).unwrap().len(), 3);
    }

    #[test]
    fn all_accepted_prefixes_verify() {
        for v in [
            bcrypt::Version::TwoA,
            bcrypt::Version::TwoB,
            bcrypt::Version::TwoY,
        ] {
            let h = bcrypt_hash(b"s3cret", v);
            let db = Htpasswd::parse(&format!("u:{h}")).unwrap();
            let got = db.get("u").unwrap();
            assert!(got.verify(b"s3cret"), "{h}");
            assert!(!got.verify(b"s3cre"), "{h}");
            assert_eq!(got.scheme(), "bcrypt");
            assert_eq!(got.bcrypt_cost(), Some(4));
        }
        // Same salt and digest under another accepted prefix: still valid.
        let b = ALICE_HASH.replacen("$2y$", "$2b$", 1);
        assert!(PasswordHash::Bcrypt(b).verify(b"secret"));
    }

    #[test]
    fn comments_blank_lines_and_crlf() {
        let text =
            format!("# users\r\n\r\n   \r\n\t# indented comment\n{ALICE}\r\n\n{BOB}\r\n#{CAROL}\n");
        let db = Htpasswd::parse(&text).unwrap();
        assert_eq!(db.len(), 2);
        assert!(db.get("alice").unwrap().verify(b"secret"));
        assert!(db.get("bob").unwrap().verify(b"pa:ss word"));
        assert!(db.get("carol").is_none());
        assert!(db.get("#carol").is_none());
    }

    #[test]
    fn leading_bom_is_ignored() {
        let db = Htpasswd::parse(&format!("\u{feff}{ALICE}\r\n")).unwrap();
        assert!(db.get("alice").unwrap().verify(b"secret"));
        // Only at the very start; anywhere else it is part of a name.
        let db = Htpasswd::parse(&format!("{BOB}\n\u{feff}{ALICE}")).unwrap();
        assert!(db.get("alice").is_none());
    }

    #[test]
    fn stray_cr_is_not_a_line_ending() {
        let e = one_error(&format!("{BOB}\r\n{ALICE}\r\r\n"));
        assert_eq!(e.line, 2);
        assert!(e.reason.contains("wrong length"), "{}", e.reason);
        // A CR-only "line" is not blank either: old Mac line endings would
        // glue the whole file into one line, so fail loudly.
        let e = one_error(&format!("{BOB}\r{ALICE}"));
        assert_eq!(e.line, 1);
    }

    #[test]
    fn final_line_without_newline() {
        let db = Htpasswd::parse(&format!("{BOB}\n{ALICE}")).unwrap();
        assert!(db.get("alice").unwrap().verify(b"secret"));
    }

    #[test]
    fn empty_and_comment_only_files_are_empty_not_errors() {
        for text in ["", "\n", "\r\n", "# nobody yet\n"] {
            let db = Htpasswd::parse(text).unwrap();
            assert!(db.is_empty());
            assert_eq!(db.len(), 0);
            assert_eq!(db.users().count(), 0);
        }
    }

    #[test]
    fn trailing_comment_fields_are_ignored() {
        let text = format!("{ALICE}:Alice Liddell:ops\n{BOB}:\n{CAROL}  \n");
        let db = Htpasswd::parse(&text).unwrap();
        assert_eq!(
            db.get("alice").unwrap(),
            &PasswordHash::Bcrypt(ALICE_HASH.into())
        );
        assert!(db.get("alice").unwrap().verify(b"secret"));
        assert!(db.get("bob").unwrap().verify(b"pa:ss word"));
        assert!(db.get("carol").unwrap().verify(b"hunter2"));
    }

    #[test]
    fn first_duplicate_wins() {
        let alice2 = bcrypt_hash(b"other", bcrypt::Version::TwoY);
        let db = Htpasswd::parse(&format!("alice:{alice2}\n{ALICE}\n")).unwrap();
        assert_eq!(db.len(), 1);
        let h = db.get("alice").unwrap();
        assert!(h.verify(b"other"));
        assert!(!h.verify(b"secret"));
    }

    #[test]
    fn structural_errors() {
        let cases = [
            ("alice", "missing ':' between user and hash"),
            (&format!(":{ALICE_HASH}"), "empty user name"),
            ("alice:", "empty password hash"),
            ("alice::comment", "empty password hash"),
            (
                &format!(" alice:{ALICE_HASH}"),
                "user name has leading or trailing whitespace",
            ),
            (
                &format!("alice\t:{ALICE_HASH}"),
                "user name has leading or trailing whitespace",
            ),
            (
                &format!("al\u{7f}ice:{ALICE_HASH}"),
                "user name contains control characters",
            ),
            (
                &format!("alice\r:{ALICE_HASH}"),
                "user name contains control characters",
            ),
        ];
        for (text, reason) in cases {
            let e = one_error(text);
            assert_eq!((e.line, e.reason.as_str()), (1, reason), "{text:?}");
        }
    }

    #[test]
    fn unsupported_schemes_are_named_without_echoing_the_hash() {
        let cases = [
            (DAVE_APR1, "apr1-md5"),
            (ERIN_SHA, "SHA-1"),
            (GINA_SHA256, "sha256-crypt"),
            (HANK_SHA512, "sha512-crypt"),
            ("x:$1$saltsalt$qjXMvbEw8oaL.CzflDugX/", "md5-crypt"),
            ("x:{SSHA}c2FsdHNhbHRzYWx0c2FsdA==", "salted SHA-1"),
            ("x:{PLAIN}hunter2", "plaintext"),
            (IVAN_CRYPT, "unsupported hash scheme (only"),
            (FRANK_PLAIN, "unsupported hash scheme (only"),
            (
                "x:$2x$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW",
                "$2x$",
            ),
            ("x:$3$hunter2", "unsupported hash scheme (only"),
        ];
        for (line, needle) in cases {
            let e = one_error(line);
            assert!(e.reason.contains(needle), "{line}: {}", e.reason);
            assert!(e.reason.contains("only bcrypt $2y$/$2b$/$2a$ is supported"));
            let secret = line.split_once(':').unwrap().1;
            assert!(!e.reason.contains(secret), "{line}: {}", e.reason);
            assert!(!e.to_string().contains(secret));
        }
    }

    #[test]
    fn malformed_bcrypt_hashes() {
        let body = &ALICE_HASH[7..]; // 53 chars of salt and digest
        let cases = [
            (format!("$2y$05${}", &body[1..]), "wrong length"),
            (format!("$2y$05${body}x"), "wrong length"),
            ("$2y$".to_owned(), "wrong length"),
            (format!("$2y$5$x{body}"), "two cost digits"),
            (format!("$2y$+5${body}"), "two cost digits"),
            (format!("$2y$05x{body}"), "two cost digits"),
            (format!("$2y$03${body}"), "cost outside 04..31"),
            (format!("$2y$32${body}"), "cost outside 04..31"),
            (format!("$2y$99${body}"), "cost outside 04..31"),
            (format!("$2y$05$+{}", &body[1..]), "characters outside"),
            (format!("$2y$05${}=", &body[..52]), "characters outside"),
            (format!("$2y$05$ {}", &body[1..]), "characters outside"),
            // 22nd salt char: 'O' -> 'P' sets a bit past the 128-bit salt.
            (ALICE_HASH.replacen("5949MO", "5949MP", 1), "not canonical"),
            // Last digest char: 'i' -> 'j' sets a bit past the 184-bit digest.
            (format!("{}j", &ALICE_HASH[..59]), "not canonical"),
        ];
        for (hash, needle) in cases {
            let e = one_error(&format!("alice:{hash}"));
            assert!(
                e.reason.starts_with("malformed bcrypt hash"),
                "{hash}: {}",
                e.reason
            );
            assert!(e.reason.contains(needle), "{hash}: {}", e.reason);
            let after_prefix = &hash[4..];
            if !after_prefix.is_empty() {
                assert!(!e.reason.contains(after_prefix), "{hash}: {}", e.reason);
            }
        }
        // Non-ASCII where the cost goes must not panic on a char boundary.
        let e = one_error("alice:$2y$é$aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
        assert!(
            e.reason.starts_with("malformed bcrypt hash"),
            "{}",
            e.reason
        );
        let e = one_error(&format!("alice:$2y$05${}é", &body[..51]));
        assert!(
            e.reason.starts_with("malformed bcrypt hash"),
            "{}",
            e.reason
        );
    }

    #[test]
    fn cost_bounds_are_inclusive() {
        for cost in ["04", "31"] {
            let h = format!("$2y${cost}${}", &ALICE_HASH[7..]);
            let db = Htpasswd::parse(&format!("a:{h}")).unwrap();
            assert_eq!(
                db.get("a").unwrap().bcrypt_cost(),
                Some(cost.parse().unwrap())
            );
        }
    }

    #[test]
    fn all_errors_collected_with_line_numbers() {
        let text = [
            "# header",              // 1
            ALICE,                   // 2
            "nocolon",               // 3
            "",                      // 4
            DAVE_APR1,               // 5
            " \t",                   // 6 (blank)
            ":$2y$05$whatever",      // 7
            BOB,                     // 8
            "carol:$2y$05$tooshort", // 9
        ]
        .join("\r\n");
        let errs = Htpasswd::parse(&text).unwrap_err();
        let lines: Vec<usize> = errs.iter().map(|e| e.line).collect();
        assert_eq!(lines, [3, 5, 7, 9]);
        assert_eq!(
            errs[0].to_string(),
            "line 3: missing ':' between user and hash"
        );
        assert!(errs[1]
            .to_string()
            .starts_with("line 5: unsupported hash scheme apr1-md5"));
        assert_eq!(errs[2].to_string(), "line 7: empty user name");
        assert!(errs[3]
            .to_string()
            .starts_with("line 9: malformed bcrypt hash"));
    }

    #[test]
    fn debug_output_hides_hashes() {
        let db = Htpasswd::parse(ALICE).unwrap();
        for s in [format!("{db:?}"), format!("{:?}", db.get("alice").unwrap())] {
            assert!(!s.contains(&ALICE_HASH[7..]), "{s}");
            assert!(!s.contains("aGKQ"), "{s}");
        }
        assert!(format!("{:?}", db.get("alice").unwrap()).contains("cost: Some(5)"));
    }

    #[test]
    fn hand_built_bad_hash_never_verifies() {
        let bad = PasswordHash::Bcrypt("not a hash".to_owned());
        assert!(!bad.verify(b"not a hash"));
        assert!(!bad.verify(b""));
        assert_eq!(bad.bcrypt_cost(), None);
        assert_eq!(PasswordHash::Bcrypt("$2y$é".into()).bcrypt_cost(), None);
    }

    #[test]
    fn dummy_hash_is_well_formed_and_matches_nothing() {
        let d = dummy_hash(5);
        assert_eq!(d.scheme(), "bcrypt");
        assert_eq!(d.bcrypt_cost(), Some(5));
        let PasswordHash::Bcrypt(s) = &d;
        // It must pass the same checks as a loaded hash, or verify would
        // bail out early and be fast, defeating the point.
        assert_eq!(validate_bcrypt(s), Ok(()));
        for pw in [&b""[..], b"secret", b"\0", s.as_bytes()] {
            assert!(!d.verify(pw));
        }
        // Fresh randomness each time.
        assert_ne!(dummy_hash(4), dummy_hash(4));
    }

    #[test]
    fn dummy_hash_clamps_cost() {
        assert_eq!(dummy_hash(0).bcrypt_cost(), Some(MIN_BCRYPT_COST));
        assert_eq!(dummy_hash(3).bcrypt_cost(), Some(MIN_BCRYPT_COST));
        // The upper clamp is not exercised: cost 31 takes days.
    }

    #[test]
    fn dummy_hash_costs_about_the_same_as_a_real_one() {
        use std::time::{Duration, Instant};
        fn time(h: &PasswordHash) -> Duration {
            // Best of three to shed scheduler noise.
            (0..3)
                .map(|_| {
                    let t = Instant::now();
                    std::hint::black_box(h.verify(b"secret"));
                    t.elapsed()
                })
                .min()
                .unwrap()
        }
        let real = PasswordHash::Bcrypt(ALICE_HASH.to_owned());
        let dummy = dummy_hash(real.bcrypt_cost().unwrap());
        let (r, d) = (time(&real), time(&dummy));
        // Generous bounds: this guards against the dummy short-circuiting
        // (orders of magnitude), not against jitter.
        assert!(d * 3 > r && r * 3 > d, "real {r:?} vs dummy {d:?}");
    }

    #[test]
    fn random_16_differs() {
        assert_ne!(random_16(), random_16());
    }
}
