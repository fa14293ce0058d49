//! The cache's folder on disk, with plain synchronous `std::fs` calls: at
//! start-up (create, probe, clean up, rebuild the index), when a fill is
//! committed or an entry evicted, and from `regproxy cache`.
//!
//! Layout under `dir`:
//! - `blobs/<algorithm>/<first two hex digits>/<hex>`: one entry, the
//!   `cache::entry` header and the body. Only complete, digest-checked
//!   bodies get here, by `rename(2)` after `fdatasync(2)`, so a crash never
//!   leaves a partial entry.
//! - `tmp/<pid>/<random>`: fills in progress, one folder per process, so a
//!   process taking over the listeners (a hand-off) leaves the running
//!   one's fills alone, and a killed one's are removed at the next start.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use regproxy_core::cache::{BlobDigest, HEADER_LEN};
use regproxy_core::config::CacheConfig;

/// The cache folder, opened.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
    blobs: PathBuf,
    /// `tmp/<our pid>`.
    tmp: PathBuf,
}

/// What the start-up rebuild found.
#[derive(Debug, Default)]
pub struct Rebuilt {
    /// Entries and their body sizes, least recently modified first, for
    /// `Index::load`.
    pub entries: Vec<(BlobDigest, u64)>,
    /// Unknown or malformed files and folders removed from `blobs/`.
    pub removed_junk: usize,
    /// Folders of dead processes' fills removed from `tmp/`.
    pub removed_tmp: usize,
}

/// What is in the folder, for `regproxy cache stats`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub entries: u64,
    /// Body bytes of the entries (headers not counted).
    pub bytes: u64,
    /// Files under `tmp/`: fills in progress, or leftovers of a killed
    /// process that the next start removes.
    pub tmp_files: u64,
    pub tmp_bytes: u64,
}

/// Why the cache cannot be used; the proxy logs it and runs without one.
#[derive(Debug)]
pub struct StoreError {
    pub what: &'static str,
    pub path: PathBuf,
    pub source: io::Error,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cache: cannot {} {}: {}",
            self.what,
            self.path.display(),
            self.source
        )
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

fn failed(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StoreError {
    let path = path.to_owned();
    move |source| StoreError { what, path, source }
}

impl Store {
    /// The store at `dir`, without touching the disk: for `regproxy
    /// cache`, which must not remove a running proxy's files.
    pub fn at(dir: &Path) -> Store {
        Store {
            dir: dir.to_owned(),
            blobs: dir.join("blobs"),
            tmp: dir.join("tmp").join(std::process::id().to_string()),
        }
    }

    /// Opens the cache for this process: creates the folders, checks that
    /// a file can be written and synced there, removes dead processes'
    /// fills and anything under `blobs/` that is not an entry (each
    /// logged), and lists the entries.
    pub fn open(cfg: &CacheConfig) -> Result<(Store, Rebuilt), StoreError> {
        let store = Store::at(&cfg.dir);
        fs::create_dir_all(&store.blobs).map_err(failed("create", &store.blobs))?;
        // Our own pid's folder can only be a dead process's: a container's
        // regproxy is pid 1 on every start, and we have no fills yet.
        remove_any(&store.tmp).map_err(failed("clean", &store.tmp))?;
        fs::create_dir_all(&store.tmp).map_err(failed("create", &store.tmp))?;
        store.probe()?;
        let removed_tmp = store.remove_dead_tmp()?;
        let listing = scan::list(&store.blobs, scan::Junk::Remove, scan::threads())?;
        let entries = listing.entries.into_iter().map(|e| (e.digest, e.size));
        let (entries, removed_junk) = (entries.collect(), listing.junk);
        Ok((
            store,
            Rebuilt {
                entries,
                removed_junk,
                removed_tmp,
            },
        ))
    }

    /// Writes, syncs and removes a file where fills will go: a read-only
    /// or full disk shows here, at start, rather than in every fill.
    fn probe(&self) -> Result<(), StoreError> {
        let path = self.tmp.join("probe");
        let write = || -> io::Result<()> {
            let mut f = File::create(&path)?;
            f.write_all(&[0u8; HEADER_LEN as usize])?;
            f.sync_data()?;
            fs::remove_file(&path)
        };
        write().map_err(failed("write a probe file at", &path))
    }

    /// Removes `tmp/<pid>` folders whose process is gone, and anything
    /// else under `tmp/`. Keeps everything when `/proc` cannot tell.
    fn remove_dead_tmp(&self) -> Result<usize, StoreError> {
        let tmp = self.dir.join("tmp");
        if !Path::new("/proc/self").exists() {
            tracing::warn!("cache: no /proc; leaving {} as it is", tmp.display());
            return Ok(0);
        }
        let own = self.tmp.file_name();
        let mut removed = 0;
        for entry in fs::read_dir(&tmp).map_err(failed("list", &tmp))? {
            let entry = entry.map_err(failed("list", &tmp))?;
            let name = entry.file_name();
            if Some(name.as_os_str()) == own {
                continue;
            }
            let pid = name.to_str().and_then(|n| n.parse::<u32>().ok());
            if pid.is_some_and(|p| p > 0 && Path::new("/proc").join(p.to_string()).exists()) {
                continue;
            }
            let path = entry.path();
            tracing::info!(path = %path.display(), "cache: removing a dead process's fills");
            remove_any(&path).map_err(failed("remove", &path))?;
            removed += 1;
        }
        Ok(removed)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the entry for `d` lives (whether or not it exists).
    pub fn path(&self, d: &BlobDigest) -> PathBuf {
        self.blobs.join(d.relative_path())
    }

    /// A new, empty file for a fill, open for reading and writing, under
    /// this process's `tmp/<pid>/`.
    pub fn tmp_file(&self) -> io::Result<(PathBuf, File)> {
        loop {
            let mut name = [0u8; 12];
            getrandom::fill(&mut name).map_err(io::Error::other)?;
            let path = self.tmp.join(hex(&name));
            let opened = File::options()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path);
            match opened {
                Ok(f) => return Ok((path, f)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Makes the finished fill at `tmp` the entry for `d`: its data is
    /// synced, then it is renamed into place (its fan-out folder made if
    /// missing), replacing any entry there. A reader of `tmp` keeps its
    /// open file. Returns the entry's path.
    pub fn commit(&self, tmp: &Path, d: &BlobDigest) -> io::Result<PathBuf> {
        File::open(tmp)?.sync_data()?;
        let path = self.path(d);
        if let Some(fan) = path.parent() {
            fs::create_dir_all(fan)?;
        }
        fs::rename(tmp, &path)?;
        Ok(path)
    }

    /// Unlinks the entry for `d`; a missing one is not an error. Readers
    /// that opened it finish reading it.
    pub fn remove(&self, d: &BlobDigest) -> io::Result<()> {
        match fs::remove_file(self.path(d)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Removes every entry (not fills in progress); what was removed.
    pub fn purge_all(&self) -> Result<Stats, StoreError> {
        let mut removed = Stats::default();
        for e in scan::list(&self.blobs, scan::Junk::Keep, 1)?.entries {
            let path = self.path(&e.digest);
            match fs::remove_file(&path) {
                Ok(()) => {
                    removed.entries += 1;
                    removed.bytes += e.size;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(failed("remove", &path)(e)),
            }
        }
        Ok(removed)
    }

    /// Entries, their bytes, and files under `tmp/`; read-only.
    pub fn stats(&self) -> Result<Stats, StoreError> {
        let mut stats = Stats::default();
        for e in scan::list(&self.blobs, scan::Junk::Keep, 1)?.entries {
            stats.entries += 1;
            stats.bytes += e.size;
        }
        let tmp = self.dir.join("tmp");
        let procs = match fs::read_dir(&tmp) {
            Ok(dir) => dir,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(stats),
            Err(e) => return Err(failed("list", &tmp)(e)),
        };
        for proc_dir in procs {
            let proc_dir = proc_dir.map_err(failed("list", &tmp))?.path();
            // A stray file, or a fill folder removed meanwhile.
            let Ok(files) = fs::read_dir(&proc_dir) else {
                continue;
            };
            for file in files {
                let file = file.map_err(failed("list", &proc_dir))?;
                if let Ok(meta) = file.metadata() {
                    stats.tmp_files += 1;
                    stats.tmp_bytes += meta.len();
                }
            }
        }
        Ok(stats)
    }
}

/// Removes a file or a folder with everything in it; missing is fine.
fn remove_any(path: &Path) -> io::Result<()> {
    let result = match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) => Err(e),
    };
    match result {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

mod scan;

#[cfg(test)]
mod tests;
