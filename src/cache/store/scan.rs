//! The walk of `blobs/`: every entry with its body size and modification
//! time, oldest first, and what does not belong there. Start-up runs it
//! before serving, so the fan-out folders are listed on several threads:
//! each entry costs a `getdents64` share and one `statx`, and a cold
//! dentry cache makes those disk reads.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use regproxy_core::cache::{Algorithm, BlobDigest, HEADER_LEN};

use super::{remove_any, StoreError};

/// What to do with files that are not entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Junk {
    /// Remove each, logged (start-up).
    Remove,
    /// Only count them (`regproxy cache stats`, beside a running proxy).
    Keep,
}

#[derive(Debug)]
pub(super) struct Listed {
    pub digest: BlobDigest,
    pub size: u64,
    pub mtime: SystemTime,
}

#[derive(Debug, Default)]
pub(super) struct Listing {
    /// Least recently modified first; ties by digest.
    pub entries: Vec<Listed>,
    pub junk: usize,
}

/// Threads for the start-up walk: the cores, at most 8 (past that the
/// disk, not the CPU, bounds it).
pub(super) fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
}

/// Lists `blobs/` on `threads` threads. A missing `blobs/` is empty.
pub(super) fn list(blobs: &Path, junk: Junk, threads: usize) -> Result<Listing, StoreError> {
    let (fans, mut listing) = fan_dirs(blobs, junk)?;
    let threads = threads.clamp(1, fans.len().max(1));
    let results: Vec<Result<Listing, StoreError>> = if threads == 1 {
        vec![list_fans(&fans, junk)]
    } else {
        let chunk = fans.len().div_ceil(threads);
        std::thread::scope(|s| {
            let handles: Vec<_> = fans
                .chunks(chunk)
                .map(|part| s.spawn(move || list_fans(part, junk)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        })
    };
    for part in results {
        let part = part?;
        listing.entries.extend(part.entries);
        listing.junk += part.junk;
    }
    listing
        .entries
        .sort_unstable_by(|a, b| (a.mtime, &a.digest).cmp(&(b.mtime, &b.digest)));
    Ok(listing)
}

/// One fan-out folder: its algorithm, its two hex digits, its path.
type Fan = (Algorithm, String, PathBuf);

/// The `<algorithm>/<xx>` folders, and the junk beside them.
fn fan_dirs(blobs: &Path, junk: Junk) -> Result<(Vec<Fan>, Listing), StoreError> {
    let mut fans = Vec::new();
    let mut listing = Listing::default();
    for algo_dir in read_dir(blobs)? {
        let (path, name, is_dir) = algo_dir;
        let Some(algo) = Algorithm::from_name(&name).filter(|_| is_dir) else {
            listing.junk += discard(&path, junk, "not an algorithm folder")?;
            continue;
        };
        for (fan_path, fan, is_dir) in read_dir(&path)? {
            let two_hex = fan.len() == 2
                && fan
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            if is_dir && two_hex {
                fans.push((algo, fan, fan_path));
            } else {
                listing.junk += discard(&fan_path, junk, "not a fan-out folder")?;
            }
        }
    }
    Ok((fans, listing))
}

fn list_fans(fans: &[Fan], junk: Junk) -> Result<Listing, StoreError> {
    let mut listing = Listing::default();
    for (algo, fan, dir) in fans {
        let entries = match fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(failed("list", dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| failed("list", dir, e))?;
            let name = entry.file_name();
            let digest = name
                .to_str()
                .and_then(|n| BlobDigest::from_relative(algo.as_str(), fan, n));
            // `DirEntry::metadata` is an fstatat on the folder's descriptor
            // (no walk of the whole path), and does not follow links.
            let meta = match (digest.is_some(), entry.metadata()) {
                (true, Ok(m)) => Some(m),
                // Evicted or purged meanwhile (stats beside a running proxy).
                (true, Err(e)) if e.kind() == io::ErrorKind::NotFound => continue,
                (true, Err(e)) => return Err(failed("inspect", &entry.path(), e)),
                (false, _) => None,
            };
            match (digest, meta) {
                (Some(digest), Some(m)) if m.is_file() && m.len() >= HEADER_LEN => {
                    listing.entries.push(Listed {
                        digest,
                        size: m.len() - HEADER_LEN,
                        mtime: m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                    })
                }
                _ => listing.junk += discard(&entry.path(), junk, "not an entry")?,
            }
        }
    }
    Ok(listing)
}

/// A folder's entries as (path, name, is a folder), from `getdents64`'s
/// types without a `stat` each; names that are not UTF-8 are given as an
/// empty name, which nothing accepts. A missing folder is empty.
fn read_dir(dir: &Path) -> Result<Vec<(PathBuf, String, bool)>, StoreError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(failed("list", dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| failed("list", dir, e))?;
        let is_dir = entry
            .file_type()
            .map_err(|e| failed("list", dir, e))?
            .is_dir();
        let name = entry.file_name().into_string().unwrap_or_default();
        out.push((entry.path(), name, is_dir));
    }
    Ok(out)
}

/// Removes (logged) or counts one piece of junk; 1.
fn discard(path: &Path, junk: Junk, why: &str) -> Result<usize, StoreError> {
    if junk == Junk::Remove {
        tracing::warn!(path = %path.display(), reason = why, "cache: removing what is not an entry");
        remove_any(path).map_err(|e| failed("remove", path, e))?;
    }
    Ok(1)
}

fn failed(what: &'static str, path: &Path, source: io::Error) -> StoreError {
    StoreError {
        what,
        path: path.to_owned(),
        source,
    }
}
