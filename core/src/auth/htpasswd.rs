//! The user database: an Apache/nginx `htpasswd` file.
//!
//! Pipeline role: the second half of *authenticate*. Once the `Authorization`
//! header has been decoded into a user and password (`crate::auth::basic`),
//! the user is looked up here and the password checked with
//! [`PasswordHash::verify`]. Parsing happens once at load/reload. Some
//! schemes are deliberately slow (bcrypt, SHA-crypt): the caller asks
//! [`PasswordHash::is_slow`] and runs those off the event loop, and caches
//! every outcome.
//!
//! Semantics follow nginx's `auth_basic_user_file`: one `user:hash` per line,
//! `#` comments, and the first line for a user wins. Unlike nginx, the whole
//! file is validated up front so a typo is reported at load with its line
//! number instead of surfacing later as a user who can never log in.
//!
//! Schemes are exactly those nginx reads on a glibc system and the feature
//! request lists: bcrypt, `$apr1$`, `{SHA}`, `{SSHA}`, `{PLAIN}`, `$5$` and
//! `$6$`. nginx checks a password by recomputing the stored string and
//! comparing it byte for byte, so a stored string that its own algorithm
//! could never reproduce (a salt past the algorithm's length, stray bits in
//! the last base64 character, non-canonical `rounds=`) never matches there;
//! here it is refused at load with the reason instead. Salts must use the
//! crypt alphabet `[./0-9A-Za-z]`, which is all that htpasswd and openssl
//! generate. Every digest comparison is constant-time (`subtle`).

use std::collections::HashMap;
use std::fmt;

pub use crate::auth::LineError;
#[cfg(test)]
use dummy::random_16;
pub use dummy::{dummy_hash, dummy_like};

use base64::engine::general_purpose::{NO_PAD, STANDARD};
use base64::engine::GeneralPurpose;
use base64::Engine as _;
use md5::{Digest as _, Md5};
use sha1::Sha1;
use sha2::Sha256;
use subtle::ConstantTimeEq;

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

/// apr1 reads at most this many salt characters (Apache `apr_md5.c`).
pub const APR1_MAX_SALT_LEN: usize = 8;
/// apr1's 128-bit digest in the crypt alphabet.
const APR1_DIGEST_LEN: usize = 22;
/// apr1's fixed stretching, as Apache and nginx do it.
const APR1_ROUNDS: usize = 1000;
/// apr1 checks of passwords up to this long run inline; longer ones belong
/// on the hash pool ([`PasswordHash::is_slow_for`]). Measured (release
/// build, one core): about 0.15 ms at 8 bytes, 0.4 ms at 64, 1.2 ms at
/// 256 and 21 ms at basic's 4 KiB cap.
pub const MAX_INLINE_PASSWORD_BYTES: usize = 64;

/// SHA-crypt reads at most this many salt characters (Drepper's spec).
pub const SHA_CRYPT_MAX_SALT_LEN: usize = 16;
/// SHA-crypt rounds when the hash names none.
pub const SHA_CRYPT_DEFAULT_ROUNDS: u32 = 5_000;
/// The spec's bounds. glibc clamps a value outside them, so a stored hash
/// with one could never be reproduced: refused at load.
pub const SHA_CRYPT_MIN_ROUNDS: u32 = 1_000;
pub const SHA_CRYPT_MAX_ROUNDS: u32 = 999_999_999;
const SHA256_CRYPT_DIGEST_LEN: usize = 43;
const SHA512_CRYPT_DIGEST_LEN: usize = 86;
const SHA1_LEN: usize = 20;

/// The alphabet of every crypt(3)-family scheme, in value order.
const CRYPT_ALPHABET: &[u8; 64] =
    b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A stored password hash. Callers should go through
/// [`verify`](Self::verify), [`scheme`](Self::scheme) and
/// [`is_slow`](Self::is_slow) rather than match on the variant. Only the
/// bcrypt variant can be built by hand; the others come from [`Htpasswd::parse`]
/// so their invariants hold and `verify` never has to fail on a shape.
#[derive(Clone, PartialEq, Eq)]
pub enum PasswordHash {
    /// A 60-character `$2a$`/`$2b$`/`$2y$` modular-crypt string.
    Bcrypt(String),
    /// Apache's MD5 crypt `$apr1$` (`htpasswd -m`, `openssl passwd -apr1`).
    Apr1(Apr1Hash),
    /// `{SHA}`: unsalted SHA-1 in base64 (`htpasswd -s`).
    Sha1(Sha1Hash),
    /// `{SSHA}`: SHA-1 of password and salt, then the salt, in base64.
    Ssha(SshaHash),
    /// `{PLAIN}`: a plaintext password.
    Plain(PlainHash),
    /// `$5$`/`$6$` SHA-crypt (`htpasswd -2`/`-5`, `openssl passwd -5`/`-6`).
    ShaCrypt(ShaCryptHash),
}

/// A parsed `$apr1$salt$digest`.
#[derive(Clone, PartialEq, Eq)]
pub struct Apr1Hash {
    salt: String,
    /// The digest as stored, in the crypt alphabet: verify encodes its own
    /// result the same way and compares, as nginx does.
    digest: [u8; APR1_DIGEST_LEN],
}

/// A parsed `{SHA}` entry: the raw SHA-1 digest.
#[derive(Clone, PartialEq, Eq)]
pub struct Sha1Hash {
    digest: [u8; SHA1_LEN],
}

/// A parsed `{SSHA}` entry.
#[derive(Clone, PartialEq, Eq)]
pub struct SshaHash {
    digest: [u8; SHA1_LEN],
    salt: Vec<u8>,
}

/// A `{PLAIN}` entry. Only the password's SHA-256 is kept: the plaintext
/// never sits in memory after load, and comparing fixed-size digests is
/// constant-time whatever the lengths (comparing the plaintexts would leak
/// the stored length).
#[derive(Clone, PartialEq, Eq)]
pub struct PlainHash {
    sha256: [u8; 32],
}

/// A `$5$`/`$6$` string, validated at load.
#[derive(Clone, PartialEq, Eq)]
pub struct ShaCryptHash {
    /// The whole modular-crypt string; the sha-crypt crate parses it again
    /// at verify time, which cannot fail for a string that passed
    /// [`parse_sha_crypt`].
    hash: String,
    sha512: bool,
    rounds: u32,
}

impl PasswordHash {
    /// Checks `password` against the hash, comparing digests in constant
    /// time. Slow for the schemes where [`is_slow`](Self::is_slow) says so
    /// (bcrypt at the file's cost, SHA-crypt at its rounds: milliseconds to
    /// hundreds of them): never call those on an event loop.
    ///
    /// As in every implementation, bcrypt uses only the first 72 bytes of
    /// the password.
    pub fn verify(&self, password: &[u8]) -> bool {
        match self {
            // A hash that fails to parse cannot match anything; `parse`
            // already refuses such hashes, so this only guards values built
            // by hand.
            PasswordHash::Bcrypt(hash) => bcrypt::verify(password, hash).unwrap_or(false),
            PasswordHash::Apr1(h) => {
                let ours = apr1_encoded(password, h.salt.as_bytes());
                ours.ct_eq(&h.digest).into()
            }
            PasswordHash::Sha1(h) => {
                let ours: [u8; SHA1_LEN] = Sha1::digest(password).into();
                ours.ct_eq(&h.digest).into()
            }
            PasswordHash::Ssha(h) => {
                let mut sha = Sha1::new();
                sha.update(password);
                sha.update(&h.salt);
                let ours: [u8; SHA1_LEN] = sha.finalize().into();
                ours.ct_eq(&h.digest).into()
            }
            PasswordHash::Plain(h) => {
                let ours: [u8; 32] = Sha256::digest(password).into();
                ours.ct_eq(&h.sha256).into()
            }
            PasswordHash::ShaCrypt(h) => {
                use sha_crypt::PasswordVerifier as _;
                // The crate reads algorithm, rounds and salt from the string
                // and compares in constant time.
                sha_crypt::ShaCrypt::default()
                    .verify_password(password, h.hash.as_str())
                    .is_ok()
            }
        }
    }

    /// Whether [`verify`](Self::verify) is deliberately expensive and must
    /// run on the hash pool: bcrypt and SHA-crypt. apr1 (1000 MD5 rounds),
    /// `{SHA}`, `{SSHA}` and `{PLAIN}` are cheap enough to check inline,
    /// though apr1's cost grows with the password: see
    /// [`MAX_INLINE_PASSWORD_BYTES`] and [`is_slow_for`](Self::is_slow_for).
    pub fn is_slow(&self) -> bool {
        match self {
            PasswordHash::Bcrypt(_) | PasswordHash::ShaCrypt(_) => true,
            PasswordHash::Apr1(_)
            | PasswordHash::Sha1(_)
            | PasswordHash::Ssha(_)
            | PasswordHash::Plain(_) => false,
        }
    }

    /// [`is_slow`](Self::is_slow), also true for an apr1 check of a
    /// password longer than [`MAX_INLINE_PASSWORD_BYTES`]: apr1 hashes the
    /// password about 2000 times, so a client sending kilobyte passwords
    /// could otherwise hold an event loop for milliseconds per request.
    /// SHA-crypt's cost grows with the password too (quadratically in
    /// part: 160 ms for a 4 KiB password at `$6$` 5000 rounds), which is
    /// one more reason it is always [`is_slow`](Self::is_slow).
    pub fn is_slow_for(&self, password: &[u8]) -> bool {
        self.is_slow()
            || (matches!(self, PasswordHash::Apr1(_)) && password.len() > MAX_INLINE_PASSWORD_BYTES)
    }

    /// Orders hashes by what a check costs: scheme class first (bcrypt,
    /// SHA-crypt, apr1, {SSHA}, {SHA}, {PLAIN}), then the work factor.
    fn cost_rank(&self) -> (u8, u32) {
        match self {
            PasswordHash::Plain(_) => (0, 0),
            PasswordHash::Sha1(_) => (1, 0),
            PasswordHash::Ssha(h) => (2, h.salt.len() as u32),
            PasswordHash::Apr1(_) => (3, 0),
            PasswordHash::ShaCrypt(h) => (4 + u8::from(h.sha512), h.rounds),
            PasswordHash::Bcrypt(_) => (6, self.bcrypt_cost().unwrap_or(0)),
        }
    }

    /// Whether a check against this hash costs less than one against
    /// `other`, in the order [`Htpasswd::costliest`] picks the stand-in by
    /// (scheme class first, then the work factor).
    pub fn costs_less_than(&self, other: &PasswordHash) -> bool {
        self.cost_rank() < other.cost_rank()
    }

    /// Short scheme name for logs and metrics.
    pub fn scheme(&self) -> &'static str {
        match self {
            PasswordHash::Bcrypt(_) => "bcrypt",
            PasswordHash::Apr1(_) => "apr1",
            PasswordHash::Sha1(_) => "sha1",
            PasswordHash::Ssha(_) => "ssha",
            PasswordHash::Plain(_) => "plain",
            PasswordHash::ShaCrypt(h) if h.sha512 => "sha512-crypt",
            PasswordHash::ShaCrypt(_) => "sha256-crypt",
        }
    }

    /// The bcrypt work factor, so the caller can give [`dummy_hash`] the
    /// same cost as the real entries. `None` for other schemes.
    pub fn bcrypt_cost(&self) -> Option<u32> {
        match self {
            PasswordHash::Bcrypt(hash) => hash.get(4..6)?.parse().ok(),
            _ => None,
        }
    }

    /// The SHA-crypt rounds (explicit or the default 5000). `None` for
    /// other schemes.
    pub fn sha_crypt_rounds(&self) -> Option<u32> {
        match self {
            PasswordHash::ShaCrypt(h) => Some(h.rounds),
            _ => None,
        }
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A leaked hash (or salt) can be attacked offline; keep it out of
        // logs. Only the scheme and its public work factor are shown.
        match self {
            PasswordHash::Bcrypt(_) => f
                .debug_struct("Bcrypt")
                .field("cost", &self.bcrypt_cost())
                .finish_non_exhaustive(),
            PasswordHash::ShaCrypt(h) => f
                .debug_struct("ShaCrypt")
                .field("sha512", &h.sha512)
                .field("rounds", &h.rounds)
                .finish_non_exhaustive(),
            other => f.debug_struct(other.scheme()).finish_non_exhaustive(),
        }
    }
}

/// A parsed htpasswd file.
#[derive(Debug, Clone, Default)]
pub struct Htpasswd {
    entries: HashMap<String, PasswordHash>,
    /// What unknown users are checked against, once computed by
    /// [`with_unknown_user_dummy`](Self::with_unknown_user_dummy).
    dummy: Option<PasswordHash>,
}

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
            Ok(Htpasswd {
                entries,
                dummy: None,
            })
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

    /// The entry whose check costs the most: the highest bcrypt cost, else
    /// the most SHA-crypt rounds, else the costliest cheap scheme. `None`
    /// for an empty file.
    pub fn costliest(&self) -> Option<&PasswordHash> {
        self.entries.values().max_by_key(|h| h.cost_rank())
    }

    /// Computes the stand-in that unknown users are checked against, of the
    /// scheme and cost of [`costliest`](Self::costliest), so that "no such
    /// user" takes as long as "wrong password" (see [`dummy_like`]); failed
    /// checks of users with a cheaper hash run it too. Runs
    /// that hash once (up to a bcrypt at the file's cost): call it when a
    /// file is loaded for serving, not for a syntax check.
    pub fn with_unknown_user_dummy(mut self) -> Self {
        self.dummy = Some(dummy_like(self.costliest()));
        self
    }

    /// The stand-in, if [`with_unknown_user_dummy`](Self::with_unknown_user_dummy) ran.
    pub fn unknown_user_dummy(&self) -> Option<&PasswordHash> {
        self.dummy.as_ref()
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
    // Some tools append `:comment` fields; no hash contains ':' (nginx too
    // ends the password field there). Trailing blanks are editor residue;
    // for `{PLAIN}` this means a password cannot end in a blank.
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
    // Prefixes are case-sensitive, as in nginx (`ngx_strncmp`).
    if let Some(rest) = hash.strip_prefix("$apr1$") {
        return parse_apr1(rest).map(PasswordHash::Apr1);
    }
    if let Some(rest) = hash.strip_prefix("{SHA}") {
        return parse_sha1(rest).map(PasswordHash::Sha1);
    }
    if let Some(rest) = hash.strip_prefix("{SSHA}") {
        return parse_ssha(rest).map(PasswordHash::Ssha);
    }
    if let Some(rest) = hash.strip_prefix("{PLAIN}") {
        if rest.is_empty() {
            // nginx would accept an empty password here; a blank password
            // is never what an operator meant.
            return Err("empty {PLAIN} password");
        }
        return Ok(PasswordHash::Plain(PlainHash {
            sha256: Sha256::digest(rest.as_bytes()).into(),
        }));
    }
    if hash.starts_with("$5$") {
        return parse_sha_crypt(hash, false).map(PasswordHash::ShaCrypt);
    }
    if hash.starts_with("$6$") {
        return parse_sha_crypt(hash, true).map(PasswordHash::ShaCrypt);
    }
    Err(unsupported_scheme(hash))
}

/// Builds an "unsupported" reason at compile time: keeping every reason a
/// `&'static str` means no byte of the input can ever be formatted into one.
macro_rules! unsupported {
    ($what:literal) => {
        concat!(
            $what,
            " (supported: bcrypt $2y$/$2b$/$2a$, $apr1$, {SHA}, {SSHA}, {PLAIN}, $5$, $6$)"
        )
    };
}

/// Names the scheme when we recognise it (from a fixed table, never from the
/// input) so the operator knows what to regenerate.
fn unsupported_scheme(hash: &str) -> &'static str {
    const KNOWN: [(&str, &str); 2] = [
        (
            "$2x$",
            unsupported!("unsupported hash scheme bcrypt $2x$, a legacy variant for buggy hashes"),
        ),
        ("$1$", unsupported!("unsupported hash scheme md5-crypt $1$")),
    ];
    if let Some((_, reason)) = KNOWN.iter().find(|(prefix, _)| hash.starts_with(prefix)) {
        return reason;
    }
    // Traditional DES crypt (`htpasswd -d`): 2 salt + 11 digest characters.
    if hash.len() == 13 && hash.bytes().all(is_crypt_char) {
        return unsupported!(
            "unsupported hash scheme DES crypt (it reads only 8 password characters), \
             or a plaintext password without {PLAIN}"
        );
    }
    if hash.starts_with('$') || hash.starts_with('{') {
        return unsupported!("unsupported hash scheme");
    }
    unsupported!(
        "unrecognised password hash; a plaintext password needs the {PLAIN} prefix, \
         which htpasswd -p does not write"
    )
}

fn is_crypt_char(b: u8) -> bool {
    b == b'.' || b == b'/' || b.is_ascii_alphanumeric()
}

/// Index of a crypt-alphabet character; callers have checked membership.
fn crypt_value(b: u8) -> u8 {
    match b {
        b'.' => 0,
        b'/' => 1,
        b'0'..=b'9' => b - b'0' + 2,
        b'A'..=b'Z' => b - b'A' + 12,
        b'a'..=b'z' => b - b'a' + 38,
        _ => u8::MAX,
    }
}

/// `rest` is what follows `$apr1$`: `salt$digest`.
fn parse_apr1(rest: &str) -> Result<Apr1Hash, &'static str> {
    let Some((salt, digest)) = rest.split_once('$') else {
        return Err("malformed $apr1$ hash: missing '$' after the salt");
    };
    if salt.is_empty() || salt.len() > APR1_MAX_SALT_LEN {
        return Err("malformed $apr1$ hash: salt must be 1 to 8 characters");
    }
    if !salt.bytes().all(is_crypt_char) {
        return Err("malformed $apr1$ hash: salt has characters outside [./0-9A-Za-z]");
    }
    let digest = digest.as_bytes();
    let Ok(digest) = <[u8; APR1_DIGEST_LEN]>::try_from(digest) else {
        return Err("malformed $apr1$ hash: the digest must be 22 characters");
    };
    if !digest.iter().copied().all(is_crypt_char) {
        return Err("malformed $apr1$ hash: digest has characters outside [./0-9A-Za-z]");
    }
    // The last character carries the top 2 bits of one byte: 0..=3.
    if crypt_value(digest[APR1_DIGEST_LEN - 1]) > 3 {
        return Err("malformed $apr1$ hash: digest is not canonical (stray bits at the end)");
    }
    Ok(Apr1Hash {
        salt: salt.to_owned(),
        digest,
    })
}

fn parse_sha1(rest: &str) -> Result<Sha1Hash, &'static str> {
    // Standard alphabet, canonical padding and zero trailing bits: nginx
    // compares against its own encoding, so nothing else could match.
    let Ok(raw) = STANDARD.decode(rest) else {
        return Err("malformed {SHA} hash: not canonical padded base64");
    };
    let Ok(digest) = <[u8; SHA1_LEN]>::try_from(raw.as_slice()) else {
        return Err("malformed {SHA} hash: not a 20-byte SHA-1 digest");
    };
    Ok(Sha1Hash { digest })
}

fn parse_ssha(rest: &str) -> Result<SshaHash, &'static str> {
    let Ok(raw) = STANDARD.decode(rest) else {
        return Err("malformed {SSHA} hash: not canonical padded base64");
    };
    // base64(SHA1(password ‖ salt) ‖ salt); the salt may be any length,
    // including none (nginx computes the same).
    let Some((digest, salt)) = raw.split_first_chunk::<SHA1_LEN>() else {
        return Err("malformed {SSHA} hash: shorter than a 20-byte SHA-1 digest");
    };
    Ok(SshaHash {
        digest: *digest,
        salt: salt.to_vec(),
    })
}

/// `whole` is `$5$` or `$6$` then `[rounds=N$]salt$digest`.
fn parse_sha_crypt(whole: &str, sha512: bool) -> Result<ShaCryptHash, &'static str> {
    let rest = whole.get(3..).unwrap_or_default();
    let (rounds, rest) = match rest.strip_prefix("rounds=") {
        Some(after) => {
            let Some((n, rest)) = after.split_once('$') else {
                return Err("malformed SHA-crypt hash: missing '$' after rounds=N");
            };
            (parse_rounds(n)?, rest)
        }
        None => (SHA_CRYPT_DEFAULT_ROUNDS, rest),
    };
    let Some((salt, digest)) = rest.split_once('$') else {
        return Err("malformed SHA-crypt hash: missing '$' after the salt");
    };
    if salt.is_empty() || salt.len() > SHA_CRYPT_MAX_SALT_LEN {
        return Err("malformed SHA-crypt hash: salt must be 1 to 16 characters");
    }
    if !salt.bytes().all(is_crypt_char) {
        return Err("malformed SHA-crypt hash: salt has characters outside [./0-9A-Za-z]");
    }
    let (want_len, last_max) = if sha512 {
        // 64 bytes: 21 groups of 3, then one byte in 2 characters (2 bits spare).
        (SHA512_CRYPT_DIGEST_LEN, 3)
    } else {
        // 32 bytes: 10 groups of 3, then two bytes in 3 characters (2 bits spare).
        (SHA256_CRYPT_DIGEST_LEN, 15)
    };
    if digest.len() != want_len {
        return Err(if sha512 {
            "malformed SHA-crypt hash: a $6$ digest is 86 characters"
        } else {
            "malformed SHA-crypt hash: a $5$ digest is 43 characters"
        });
    }
    if !digest.bytes().all(is_crypt_char) {
        return Err("malformed SHA-crypt hash: digest has characters outside [./0-9A-Za-z]");
    }
    if digest
        .bytes()
        .last()
        .is_some_and(|b| crypt_value(b) > last_max)
    {
        return Err("malformed SHA-crypt hash: digest is not canonical (stray bits at the end)");
    }
    // Kept as written: an explicit `rounds=` (even 5000) is part of the
    // string glibc reproduces, and the crate reads it back the same way.
    Ok(ShaCryptHash {
        hash: whole.to_owned(),
        sha512,
        rounds,
    })
}

/// Canonical decimal only (no sign, no leading zero): glibc writes it back
/// that way, so any other spelling could never match.
fn parse_rounds(n: &str) -> Result<u32, &'static str> {
    const BAD: &str = "malformed SHA-crypt hash: rounds=N must be a plain decimal number";
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) || n.starts_with('0') {
        return Err(BAD);
    }
    let Ok(rounds) = n.parse::<u32>() else {
        return Err("malformed SHA-crypt hash: rounds outside 1000..=999999999");
    };
    if !(SHA_CRYPT_MIN_ROUNDS..=SHA_CRYPT_MAX_ROUNDS).contains(&rounds) {
        return Err("malformed SHA-crypt hash: rounds outside 1000..=999999999");
    }
    Ok(rounds)
}

/// Apache's apr1: Poul-Henning Kamp's FreeBSD md5crypt with the magic
/// `$apr1$`, as in APR's `apr_md5_encode` (`crypto/apr_md5.c`) and nginx's
/// `ngx_crypt_apr1` (`src/core/ngx_crypt.c`), which this follows step by
/// step. Returns the digest in the crypt alphabet, as it is stored.
fn apr1_encoded(password: &[u8], salt: &[u8]) -> [u8; APR1_DIGEST_LEN] {
    let mut ctx = Md5::new();
    ctx.update(password);
    ctx.update(b"$apr1$");
    ctx.update(salt);

    let mut alt = Md5::new();
    alt.update(password);
    alt.update(salt);
    alt.update(password);
    let alt: [u8; 16] = alt.finalize().into();
    for chunk in password.chunks(16) {
        // One byte of `alt` per password byte, 16 at a time.
        ctx.update(&alt[..chunk.len()]);
    }
    // The famous oddity: for each bit of the length, a NUL byte when set,
    // else the password's first byte.
    let mut bits = password.len();
    while bits != 0 {
        if bits & 1 == 1 {
            ctx.update([0u8]);
        } else {
            ctx.update(password.get(..1).unwrap_or_default());
        }
        bits >>= 1;
    }
    let mut fin: [u8; 16] = ctx.finalize().into();

    for i in 0..APR1_ROUNDS {
        let mut round = Md5::new();
        if i & 1 == 1 {
            round.update(password);
        } else {
            round.update(fin);
        }
        if i % 3 != 0 {
            round.update(salt);
        }
        if i % 7 != 0 {
            round.update(password);
        }
        if i & 1 == 1 {
            round.update(fin);
        } else {
            round.update(password);
        }
        fin = round.finalize().into();
    }

    let mut out = [0u8; APR1_DIGEST_LEN];
    let groups = [(0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)];
    for (i, &(a, b, c)) in groups.iter().enumerate() {
        let v = (u32::from(fin[a]) << 16) | (u32::from(fin[b]) << 8) | u32::from(fin[c]);
        to64(&mut out[i * 4..i * 4 + 4], v);
    }
    to64(&mut out[20..], u32::from(fin[11]));
    out
}

/// crypt's base64: least significant 6 bits first, one character per slot.
fn to64(out: &mut [u8], mut v: u32) {
    for slot in out {
        *slot = CRYPT_ALPHABET[(v & 0x3f) as usize];
        v >>= 6;
    }
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
    if !tail.iter().copied().all(is_crypt_char) {
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

mod dummy;

#[cfg(test)]
mod tests;
