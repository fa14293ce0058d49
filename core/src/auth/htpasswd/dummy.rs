//! Stand-ins for unknown users: a hash that costs what the file's costliest
//! entry costs and matches nothing, so "no such user" and "wrong password"
//! take the same time and a stranger cannot list the user names by timing.
//! The same stand-in also pads the failed checks of users whose own hash is
//! cheaper (`auth::cache`). Computed at each (re)load from the file's
//! costliest entry ([`Htpasswd::costliest`](super::Htpasswd::costliest)).

use base64::Engine as _;

use super::{
    apr1_encoded, Apr1Hash, PasswordHash, PlainHash, Sha1Hash, SshaHash, BCRYPT_B64,
    CRYPT_ALPHABET, MAX_BCRYPT_COST, MIN_BCRYPT_COST, SHA1_LEN,
};

/// The bcrypt cost used when the file has no entries at all (every login
/// fails then; nothing to match). `htpasswd -B`'s default.
const EMPTY_FILE_COST: u32 = 5;

/// A stand-in shaped like `model` (the file's costliest entry): same
/// scheme, same work factor, fresh random salt and digest, so it matches
/// nothing and a check against it costs what a check against `model` does.
///
/// SHA-crypt is the one exception: its stand-in is `model` itself, because
/// its cost depends on rounds *and* salt length and a copy is the exact
/// match. That is safe only because the caller throws away the outcome of
/// every check against a stand-in (`auth::cache`), an unknown user's or a
/// padding run: an unknown name with another user's password is still
/// refused.
pub fn dummy_like(model: Option<&PasswordHash>) -> PasswordHash {
    let Some(model) = model else {
        return dummy_hash(EMPTY_FILE_COST);
    };
    match model {
        PasswordHash::Bcrypt(_) => dummy_hash(model.bcrypt_cost().unwrap_or(EMPTY_FILE_COST)),
        PasswordHash::ShaCrypt(_) => model.clone(),
        PasswordHash::Apr1(h) => {
            // Same salt length, crypt alphabet: apr1 hashes the salt in
            // every one of its rounds.
            let salt: String = random_16()
                .iter()
                .take(h.salt.len())
                .map(|b| char::from(CRYPT_ALPHABET[usize::from(b % 64)]))
                .collect();
            let secret = zeroize::Zeroizing::new(random_16());
            PasswordHash::Apr1(Apr1Hash {
                digest: apr1_encoded(secret.as_slice(), salt.as_bytes()),
                salt,
            })
        }
        PasswordHash::Sha1(_) => PasswordHash::Sha1(Sha1Hash {
            digest: random_digest(),
        }),
        PasswordHash::Ssha(h) => PasswordHash::Ssha(SshaHash {
            digest: random_digest(),
            salt: random_16()
                .iter()
                .cycle()
                .take(h.salt.len())
                .copied()
                .collect(),
        }),
        PasswordHash::Plain(_) => {
            let mut sha256 = [0u8; 32];
            sha256[..16].copy_from_slice(&random_16());
            sha256[16..].copy_from_slice(&random_16());
            PasswordHash::Plain(PlainHash { sha256 })
        }
    }
}

/// A random SHA-1-sized digest: a preimage of it is as hard to find as one
/// of a real entry.
fn random_digest() -> [u8; SHA1_LEN] {
    let mut d = [0u8; SHA1_LEN];
    d[..16].copy_from_slice(&random_16());
    d[16..].copy_from_slice(&random_16()[..SHA1_LEN - 16]);
    d
}

/// A hash whose verify always fails but costs the same as a real one, so an
/// unknown user is not revealed by timing.
///
/// Compute once (it runs bcrypt at `cost`) and cache it. `cost` should be the
/// cost of the real entries (see [`PasswordHash::bcrypt_cost`]); values
/// outside 4..=31 are clamped. It is a bcrypt hash: a file of only cheap
/// schemes (apr1, SHA) should not send unknown users through it, or their
/// slower answer would tell them apart.
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
pub(super) fn random_16() -> [u8; 16] {
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
