//! Blob bytes and their digests.
//!
//! Pushed data is pseudo-random (wyrand: one multiply per 8 bytes, several
//! GB/s per core), generated chunk by chunk from a seed, so a GiB layer is
//! never held in memory and every blob is unique. Digests use ring's SHA-256,
//! which runs on SHA-NI or AVX2 assembly: the client hashes while it streams,
//! and hashing must not be what limits a run.
//!
//! The fake origin serves a different shape: a blob is one random pattern of
//! [`PATTERN_BYTES`] repeated, so serving it is writing a shared buffer and
//! costs the origin no generation at all; its digest is computed once per
//! (seed, size) and cached by the origin.

use bytes::Bytes;
use ring::digest;

/// Length of the origin's repeated pattern.
pub const PATTERN_BYTES: usize = 1 << 20;
/// `sha256:` followed by 64 lowercase hex digits.
pub const DIGEST_LEN: usize = 7 + 64;

/// wyrand (Wang Yi's PRNG): tiny state, fast, and good enough that nothing
/// downstream (compression, dedup) can take a shortcut on the data.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0xa076_1d64_78bd_642f);
        let t = u128::from(self.0).wrapping_mul(u128::from(self.0 ^ 0xe703_7ed1_a0b4_28db));
        ((t >> 64) as u64) ^ (t as u64)
    }

    /// Fills `buf` with the next bytes of the stream.
    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut words = buf.chunks_exact_mut(8);
        for w in &mut words {
            w.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let tail = words.into_remainder();
        if !tail.is_empty() {
            let last = self.next_u64().to_le_bytes();
            tail.copy_from_slice(&last[..tail.len()]);
        }
    }
}

/// Mixes several numbers into one well-spread seed (splitmix64 finaliser
/// over each part), so seeds from counters do not produce related streams.
pub fn seed_of(parts: &[u64]) -> u64 {
    parts.iter().fold(0x9e37_79b9_7f4a_7c15, |acc, &p| {
        let mut z = acc ^ p.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    })
}

/// The pushed content of one blob: `len` bytes from `Rng::new(seed)`.
#[derive(Debug, Clone)]
pub struct Generated {
    rng: Rng,
    left: u64,
}

impl Generated {
    pub fn new(seed: u64, len: u64) -> Self {
        Self {
            rng: Rng::new(seed),
            left: len,
        }
    }

    pub fn remaining(&self) -> u64 {
        self.left
    }

    /// Appends the next at most `max` bytes to `out`; returns how many.
    pub fn append(&mut self, out: &mut Vec<u8>, max: usize) -> usize {
        let n = usize::try_from(self.left).map_or(max, |left| left.min(max));
        let start = out.len();
        out.resize(start + n, 0);
        self.rng.fill(&mut out[start..]);
        self.left -= n as u64;
        n
    }
}

/// Streaming SHA-256 that ends as an OCI digest string.
pub struct Hasher(digest::Context);

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hasher(sha256)")
    }
}

impl Default for Hasher {
    fn default() -> Self {
        Self(digest::Context::new(&digest::SHA256))
    }
}

impl Hasher {
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// `sha256:<hex>`.
    pub fn finish(self) -> String {
        format_digest(self.0.finish().as_ref())
    }
}

/// The digest of `data`, `sha256:<hex>`.
pub fn digest_of(data: &[u8]) -> String {
    format_digest(digest::digest(&digest::SHA256, data).as_ref())
}

/// The digest a monolithic upload announces before its body: the same bytes
/// [`Generated`] will produce, hashed without being kept.
pub fn digest_of_generated(seed: u64, len: u64, scratch: &mut Vec<u8>) -> String {
    let mut gen = Generated::new(seed, len);
    let mut h = Hasher::default();
    while gen.remaining() > 0 {
        scratch.clear();
        gen.append(scratch, PATTERN_BYTES);
        h.update(scratch);
    }
    h.finish()
}

fn format_digest(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(DIGEST_LEN);
    s.push_str("sha256:");
    for b in bytes {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    s
}

/// Whether `s` is a `sha256:` digest in canonical form (RFC-style lowercase
/// hex, as the OCI distribution spec requires).
pub fn is_sha256_digest(s: &str) -> bool {
    s.len() == DIGEST_LEN
        && s.starts_with("sha256:")
        && s[7..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The origin's pattern for `seed`.
pub fn pattern(seed: u64) -> Bytes {
    let mut buf = vec![0u8; PATTERN_BYTES];
    Rng::new(seed).fill(&mut buf);
    Bytes::from(buf)
}

/// Digest of `size` bytes of `pattern` repeated: what the origin serves.
pub fn pattern_digest(pattern: &[u8], size: u64) -> String {
    let mut h = Hasher::default();
    let mut left = size;
    while left > 0 {
        let n = usize::try_from(left).map_or(pattern.len(), |l| l.min(pattern.len()));
        h.update(&pattern[..n]);
        left -= n as u64;
    }
    h.finish()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn generated_is_deterministic_and_chunking_free() {
        let mut a = Generated::new(7, 100_003);
        let mut whole = vec![];
        a.append(&mut whole, 1 << 20);
        assert_eq!(whole.len(), 100_003);
        assert_eq!(a.remaining(), 0);
        assert_eq!(a.append(&mut whole, 10), 0);

        // Pieces that are multiples of 8 give the same stream.
        let mut b = Generated::new(7, 100_003);
        let mut pieces = vec![];
        while b.remaining() > 0 {
            b.append(&mut pieces, 4096);
        }
        assert_eq!(pieces, whole);
        assert_ne!(Generated::new(8, 16).append(&mut vec![], 16), 0);

        let mut scratch = vec![];
        assert_eq!(
            digest_of_generated(7, 100_003, &mut scratch),
            digest_of(&whole)
        );
    }

    #[test]
    fn digests() {
        assert_eq!(
            digest_of(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let mut h = Hasher::default();
        h.update(b"a");
        h.update(b"bc");
        assert_eq!(
            h.finish(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(is_sha256_digest(&digest_of(b"x")));
        assert!(!is_sha256_digest("sha256:ABC"));
        assert!(!is_sha256_digest(&digest_of(b"x").to_uppercase()));
        assert!(!is_sha256_digest(
            &digest_of(b"x").replace("sha256", "sha512")
        ));
    }

    #[test]
    fn pattern_digest_matches_the_bytes() {
        let p = pattern(3);
        assert_eq!(p.len(), PATTERN_BYTES);
        let size = 2 * PATTERN_BYTES as u64 + 5;
        let mut bytes = p.to_vec();
        bytes.extend_from_slice(&p);
        bytes.extend_from_slice(&p[..5]);
        assert_eq!(pattern_digest(&p, size), digest_of(&bytes));
        assert_eq!(pattern_digest(&p, 0), digest_of(b""));
    }

    #[test]
    fn seeds_spread() {
        assert_ne!(seed_of(&[1, 2]), seed_of(&[2, 1]));
        assert_ne!(seed_of(&[0]), seed_of(&[0, 0]));
        assert_eq!(seed_of(&[5, 6]), seed_of(&[5, 6]));
    }
}
