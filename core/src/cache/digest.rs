//! Content digests the cache keys its files by: only the two algorithms
//! the registry computes (sha256, sha512), in their canonical lower-case
//! hex form, so that one blob has exactly one name on disk and a digest
//! from the network can never name a path outside the cache's folder.

use std::fmt;
use std::path::PathBuf;

/// The digest algorithms a cached file may be checked with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    pub const ALL: [Algorithm; 2] = [Algorithm::Sha256, Algorithm::Sha512];

    /// The name in digests and on disk: `sha256`, `sha512`.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// Length of the hex encoding: 64 or 128.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }

    /// The inverse of [`as_str`](Self::as_str); exact, lower case.
    pub fn from_name(name: &str) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|a| a.as_str() == name)
    }
}

/// A canonical digest: `sha256:` and 64 lower-case hex digits, or
/// `sha512:` and 128.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobDigest {
    algorithm: Algorithm,
    hex: Box<str>,
}

impl BlobDigest {
    /// `None` for anything but the canonical form: another algorithm, upper
    /// case, a wrong length, any other byte. Such requests are forwarded
    /// as today, never cached.
    pub fn parse(s: &str) -> Option<BlobDigest> {
        let (algo, hex) = s.split_once(':')?;
        Self::from_parts(Algorithm::from_name(algo)?, hex)
    }

    fn from_parts(algorithm: Algorithm, hex: &str) -> Option<BlobDigest> {
        let lower_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
        (hex.len() == algorithm.hex_len() && hex.bytes().all(lower_hex)).then(|| BlobDigest {
            algorithm,
            hex: hex.into(),
        })
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The encoded part, after the colon.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The two-hex fan-out folder: at most 256 entries per folder level,
    /// so no directory grows past a few hundred names per thousand blobs.
    fn fan(&self) -> &str {
        self.hex.get(..2).unwrap_or_default()
    }

    /// `sha256/ab/<hex>`, relative to the cache's `blobs/` folder.
    pub fn relative_path(&self) -> PathBuf {
        [self.algorithm.as_str(), self.fan(), self.hex()]
            .iter()
            .collect()
    }

    /// The inverse of [`relative_path`](Self::relative_path), from its
    /// three components, for the start-up rebuild: `None` unless `name`
    /// is a canonical digest of `algo` and `fan` its first two digits.
    pub fn from_relative(algo: &str, fan: &str, name: &str) -> Option<BlobDigest> {
        let d = Self::from_parts(Algorithm::from_name(algo)?, name)?;
        (d.fan() == fan).then_some(d)
    }
}

impl fmt::Display for BlobDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.as_str(), self.hex)
    }
}

#[cfg(test)]
mod tests;
