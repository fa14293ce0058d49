//! The cache's files on disk (temporary: replaced by the full store with
//! its rebuild, leftovers clean-up and purge tool).

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use regproxy_core::cache::digest::BlobDigest;
use regproxy_core::cache::entry::HEADER_LEN;

use crate::config::CacheConfig;

#[derive(Debug)]
pub struct Store {
    blobs: PathBuf,
    tmp: PathBuf,
    seq: AtomicU64,
}

#[derive(Debug, Default)]
pub struct Rebuilt {
    pub entries: Vec<(BlobDigest, u64)>,
}

impl Store {
    pub fn open(cfg: &CacheConfig) -> io::Result<(Store, Rebuilt)> {
        let blobs = cfg.dir.join("blobs");
        let tmp = cfg.dir.join("tmp").join(std::process::id().to_string());
        std::fs::create_dir_all(&blobs)?;
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp)?;
        let mut entries = Vec::new();
        walk(&blobs, &mut entries)?;
        Ok((
            Store {
                blobs,
                tmp,
                seq: AtomicU64::new(0),
            },
            Rebuilt { entries },
        ))
    }

    pub fn path(&self, d: &BlobDigest) -> PathBuf {
        self.blobs.join(d.relative_path())
    }

    pub fn tmp_file(&self) -> io::Result<(PathBuf, File)> {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let path = self.tmp.join(format!("fill-{n}"));
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        Ok((path, file))
    }

    pub fn commit(&self, tmp: &Path, d: &BlobDigest) -> io::Result<PathBuf> {
        let dest = self.path(d);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::rename(tmp, &dest)?;
        Ok(dest)
    }

    pub fn remove(&self, d: &BlobDigest) -> io::Result<()> {
        match std::fs::remove_file(self.path(d)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

fn walk(blobs: &Path, out: &mut Vec<(BlobDigest, u64)>) -> io::Result<()> {
    for algo in std::fs::read_dir(blobs)? {
        let algo = algo?;
        for fan in std::fs::read_dir(algo.path())? {
            let fan = fan?;
            for f in std::fs::read_dir(fan.path())? {
                let f = f?;
                let names = (
                    algo.file_name().to_string_lossy().into_owned(),
                    fan.file_name().to_string_lossy().into_owned(),
                    f.file_name().to_string_lossy().into_owned(),
                );
                if let Some(d) = BlobDigest::from_relative(&names.0, &names.1, &names.2) {
                    let size = f.metadata()?.len().saturating_sub(HEADER_LEN);
                    out.push((d, size));
                }
            }
        }
    }
    Ok(())
}
