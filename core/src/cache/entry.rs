//! The cached file's header: a fixed [`HEADER_LEN`]-byte block before the
//! body, holding what a hit must answer with besides the bytes (kind,
//! digest, `Content-Type`, size). Text lines, so `head -c 512` shows it,
//! behind a versioned magic line, padded with NULs. The body starts at a
//! fixed offset, so serving a range is one `sendfile`/`pread` at
//! `HEADER_LEN + start` with no parsing on the hot path beyond this block.
//!
//! [`decode`] reads bytes from disk that may be damaged or left by another
//! version: it checks every byte of the block and never panics (fuzz
//! target `cache_entry`).

use std::fmt;

use super::digest::BlobDigest;

/// Bytes before the body in every cached file.
pub const HEADER_LEN: u64 = 512;
const LEN: usize = HEADER_LEN as usize;

/// The first line; a new layout gets a new version, and files of another
/// version are treated as malformed (the rebuild removes them, the next
/// pull fetches again).
const MAGIC: &[u8] = b"regproxy-cache-entry 1\n";

/// Longest stored `Content-Type`, far past any registry media type.
pub const MAX_CONTENT_TYPE: usize = 256;

/// What a cached body is: a blob or a manifest fetched by digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Blob,
    Manifest,
}

impl Kind {
    /// The route's name, as in the header and in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Blob => "blob",
            Kind::Manifest => "manifest",
        }
    }

    fn from_bytes(b: &[u8]) -> Option<Kind> {
        [Kind::Blob, Kind::Manifest]
            .into_iter()
            .find(|k| k.as_str().as_bytes() == b)
    }
}

/// The header's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryMeta {
    pub kind: Kind,
    pub digest: BlobDigest,
    /// The registry's `Content-Type` for the body, sent back on every hit.
    pub content_type: String,
    /// Body bytes; the file is `HEADER_LEN + size` long.
    pub size: u64,
}

/// Why a header cannot be written or read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryError {
    /// Fewer than [`HEADER_LEN`] bytes.
    Truncated,
    /// Not a header of this version.
    BadMagic,
    /// A field missing, out of order, or malformed; names the field.
    BadField(&'static str),
    /// A `Content-Type` over [`MAX_CONTENT_TYPE`] bytes or with a byte
    /// other than visible ASCII and inner spaces.
    BadContentType,
    /// Something other than NULs after the fields.
    BadPadding,
}

impl fmt::Display for EntryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EntryError::Truncated => write!(f, "cache entry shorter than its {LEN}-byte header"),
            EntryError::BadMagic => f.write_str("not a regproxy cache entry of this version"),
            EntryError::BadField(name) => write!(f, "cache entry header: bad {name} field"),
            EntryError::BadContentType => {
                f.write_str("content type longer than 256 bytes or not visible ASCII")
            }
            EntryError::BadPadding => f.write_str("cache entry header: bytes after the fields"),
        }
    }
}

impl std::error::Error for EntryError {}

/// Visible ASCII with single inner spaces allowed (`a/b; charset=x`), no
/// leading or trailing space: it is written back into a response head.
fn content_type_ok(ct: &[u8]) -> bool {
    ct.len() <= MAX_CONTENT_TYPE
        && ct.iter().all(|&b| b.is_ascii_graphic() || b == b' ')
        && ct.first() != Some(&b' ')
        && ct.last() != Some(&b' ')
}

/// The header block for `meta`. Fails only on a bad `content_type`; every
/// other field has a bounded length that fits.
pub fn encode(meta: &EntryMeta) -> Result<[u8; LEN], EntryError> {
    if !content_type_ok(meta.content_type.as_bytes()) {
        return Err(EntryError::BadContentType);
    }
    let text = format!(
        "kind {}\ndigest {}\nsize {}\ncontent-type {}\n\n",
        meta.kind.as_str(),
        meta.digest,
        meta.size,
        meta.content_type
    );
    let mut block = [0u8; LEN];
    let total = MAGIC.len() + text.len();
    // Longest: 23 + 14 + 143 + 26 + 270 + 1 = 477 bytes; checked anyway.
    let (magic, rest) = block.split_at_mut(MAGIC.len());
    magic.copy_from_slice(MAGIC);
    rest.get_mut(..text.len())
        .filter(|_| total <= LEN)
        .ok_or(EntryError::BadContentType)?
        .copy_from_slice(text.as_bytes());
    Ok(block)
}

/// The header at the start of `bytes` (only the first [`HEADER_LEN`] are
/// read), checked byte for byte.
pub fn decode(bytes: &[u8]) -> Result<EntryMeta, EntryError> {
    let block = bytes.get(..LEN).ok_or(EntryError::Truncated)?;
    let mut rest = block.strip_prefix(MAGIC).ok_or(EntryError::BadMagic)?;
    let kind = field(&mut rest, "kind")
        .and_then(|v| Kind::from_bytes(v).ok_or(EntryError::BadField("kind")))?;
    let digest = field(&mut rest, "digest").and_then(|v| {
        std::str::from_utf8(v)
            .ok()
            .and_then(BlobDigest::parse)
            .ok_or(EntryError::BadField("digest"))
    })?;
    let size = field(&mut rest, "size")
        .and_then(|v| canonical_u64(v).ok_or(EntryError::BadField("size")))?;
    let ct = field(&mut rest, "content-type")?;
    if !content_type_ok(ct) {
        return Err(EntryError::BadContentType);
    }
    let content_type = String::from_utf8(ct.to_vec()).map_err(|_| EntryError::BadContentType)?;
    let padding = rest
        .strip_prefix(b"\n")
        .ok_or(EntryError::BadField("end"))?;
    if padding.iter().any(|&b| b != 0) {
        return Err(EntryError::BadPadding);
    }
    Ok(EntryMeta {
        kind,
        digest,
        content_type,
        size,
    })
}

/// The value of the line `name value\n` at the start of `rest`, which is
/// moved past it.
fn field<'a>(rest: &mut &'a [u8], name: &'static str) -> Result<&'a [u8], EntryError> {
    let bad = EntryError::BadField(name);
    let line = rest
        .strip_prefix(name.as_bytes())
        .and_then(|r| r.strip_prefix(b" "))
        .ok_or(bad)?;
    let end = line.iter().position(|&b| b == b'\n').ok_or(bad)?;
    let (value, after) = line.split_at(end);
    *rest = after.get(1..).unwrap_or_default();
    Ok(value)
}

/// Decimal digits as `encode` writes them: no sign, no leading zero.
fn canonical_u64(v: &[u8]) -> Option<u64> {
    if v.is_empty() || (v.len() > 1 && v.first() == Some(&b'0')) {
        return None;
    }
    if !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

#[cfg(test)]
mod tests;
