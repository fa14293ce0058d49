//! A fill: the registry's 200 body goes to the client and into the cache
//! file at once, hashed as it passes.
//!
//! Each batch is read from the registry into one buffer, hashed, written to
//! the file (io_uring where the driver has it: a slow disk never blocks the
//! worker), published to followers, then sent to the client. The last batch
//! goes to the client only once the digest is checked: on a mismatch the
//! client's connection closes short of its Content-Length, and its own
//! check fails loudly instead of it storing bad data.
//!
//! A client that goes away does not stop the fill: followers, and the next
//! pulls, still get the blob from this one fetch. A disk that fails stops
//! only the file: the client still gets its body.

use std::io;

use monoio::buf::IoBuf;
use ring::digest::{Context, SHA256, SHA512};

use regproxy_core::cache::digest::{Algorithm, BlobDigest};
use regproxy_core::cache::entry::HEADER_LEN;

use super::Filler;
use crate::relay::{bufpool, Buffered, Io, Timeouts, Timer};

/// How a fill ended.
#[derive(Debug)]
pub enum Outcome {
    /// Whole, checked and kept; this many entries were evicted for it.
    Kept { evicted: usize },
    /// The bytes did not hash to the digest: nothing kept.
    Mismatch,
    /// The registry's body ended early, failed or stalled: nothing kept.
    Cut(io::Error),
    /// The file could not be written (a full disk): nothing kept; the
    /// client still got its body.
    Disk(io::Error),
}

/// What a fill did.
#[derive(Debug)]
pub struct Teed {
    pub outcome: Outcome,
    /// Body bytes the client received.
    pub sent: u64,
    /// Body bytes read from the registry.
    pub fetched: u64,
    /// Why the client stopped receiving, if it did.
    pub client_error: Option<io::Error>,
}

/// The body's hash, by the digest's algorithm.
struct Hasher(Context);

impl Hasher {
    fn new(d: &BlobDigest) -> Hasher {
        Hasher(Context::new(match d.algorithm() {
            Algorithm::Sha256 => &SHA256,
            Algorithm::Sha512 => &SHA512,
        }))
    }

    fn matches(self, d: &BlobDigest) -> bool {
        let got = self.0.finish();
        let hex = d.hex().as_bytes();
        hex.len() == got.as_ref().len() * 2
            && got.as_ref().iter().zip(hex.chunks(2)).all(|(b, pair)| {
                const DIGITS: &[u8; 16] = b"0123456789abcdef";
                pair[0] == DIGITS[usize::from(b >> 4)] && pair[1] == DIGITS[usize::from(b & 15)]
            })
    }
}

/// One fill's moving parts.
struct Fill {
    /// `None` once the disk failed (or the fill was given up).
    filler: Option<Filler>,
    file: Option<monoio::fs::File>,
    hasher: Option<Hasher>,
    digest: BlobDigest,
    written: u64,
    disk_error: Option<io::Error>,
}

/// Moves the `size`-byte body from `src` (the registry, its head already
/// read) to `dst` (the client, its head already sent) and into `file`.
pub async fn tee<S: Io, D: Io>(
    src: &mut Buffered<S>,
    dst: &mut D,
    filler: Filler,
    file: std::fs::File,
    size: u64,
    t: Timeouts,
    timer: &mut Timer,
) -> Teed {
    let digest = filler.digest().clone();
    let mut fill = Fill {
        hasher: Some(Hasher::new(&digest)),
        file: Some(monoio::fs::File::from_std(file).expect("from_std never fails on unix")),
        filler: Some(filler),
        digest,
        written: 0,
        disk_error: None,
    };
    let (_slot, mut buf) = bufpool::batch();
    let cap = buf.capacity();
    let mut teed = Teed {
        outcome: Outcome::Mismatch,
        sent: 0,
        fetched: 0,
        client_error: None,
    };
    let mut left = size;
    while left > 0 {
        buf.clear();
        let want = usize::try_from(left).map_or(cap, |l| l.min(cap));
        match next_batch(src, buf, want, timer, t).await {
            Ok(b) => buf = b,
            Err(e) => {
                teed.outcome = Outcome::Cut(e);
                fill.give_up();
                return teed;
            }
        }
        left -= buf.len() as u64;
        teed.fetched += buf.len() as u64;
        buf = fill.keep(buf).await;
        if left == 0 && !fill.checks() {
            // The client never gets the last batch: see the module's doc.
            fill.give_up();
            bufpool::give(buf);
            return teed;
        }
        if teed.client_error.is_none() {
            let n = buf.len();
            match timer
                .within(t.dst, dst.write_all_slice(buf.slice(0..n)))
                .await
            {
                Ok((res, slice)) => {
                    buf = slice.into_inner();
                    match res {
                        Ok(()) => teed.sent += n as u64,
                        Err(e) => teed.client_error = Some(e),
                    }
                }
                Err(_elapsed) => {
                    buf = Vec::new();
                    teed.client_error = Some(io::ErrorKind::TimedOut.into());
                }
            }
        }
        if teed.client_error.is_some() && fill.filler.is_none() {
            // No client and no file: nothing left to move it for.
            break;
        }
    }
    bufpool::give(buf);
    teed.outcome = fill.finish().await;
    teed
}

/// The next batch of at most `want` bytes: what the head read left
/// buffered first, then reads bounded by the registry's timeout.
async fn next_batch<S: Io>(
    src: &mut Buffered<S>,
    mut buf: Vec<u8>,
    want: usize,
    timer: &mut Timer,
    t: Timeouts,
) -> io::Result<Vec<u8>> {
    if !src.unconsumed().is_empty() {
        let n = src.unconsumed().len().min(want);
        buf.extend_from_slice(&src.unconsumed()[..n]);
        src.consume(n);
        return Ok(buf);
    }
    match timer.within(t.src, src.io.read_vec(buf, want)).await {
        Ok((Ok(0), _)) => Err(io::ErrorKind::UnexpectedEof.into()),
        Ok((Ok(_), buf)) => Ok(buf),
        Ok((Err(e), _)) => Err(e),
        Err(_elapsed) => Err(io::ErrorKind::TimedOut.into()),
    }
}

impl Fill {
    /// Hashes a batch and writes it to the file; gives the buffer back.
    async fn keep(&mut self, buf: Vec<u8>) -> Vec<u8> {
        if let Some(h) = &mut self.hasher {
            h.0.update(&buf);
        }
        let Some(file) = &self.file else {
            return buf;
        };
        let n = buf.len() as u64;
        let (res, buf) = file.write_all_at(buf, HEADER_LEN + self.written).await;
        match res {
            Ok(()) => {
                self.written += n;
                if let Some(f) = &self.filler {
                    f.advance(self.written);
                }
            }
            Err(e) => {
                tracing::warn!(digest = %self.digest, error = %e,
                    "cache: cannot write a fill; the client still gets the registry's body");
                self.disk_error = Some(e);
                self.give_up();
            }
        }
        buf
    }

    /// Whether the body hashed to its digest (true after a disk failure:
    /// the client's bytes are not ours to judge then).
    fn checks(&mut self) -> bool {
        match self.hasher.take() {
            Some(h) => h.matches(&self.digest),
            None => true,
        }
    }

    fn give_up(&mut self) {
        self.file = None;
        if let Some(f) = self.filler.take() {
            f.fail();
        }
    }

    /// The body is whole and checked: synced, renamed into place, indexed.
    async fn finish(mut self) -> Outcome {
        if let Some(e) = self.disk_error.take() {
            return Outcome::Disk(e);
        }
        let (Some(file), Some(filler)) = (self.file.take(), self.filler.take()) else {
            return Outcome::Cut(io::ErrorKind::UnexpectedEof.into());
        };
        // Synced before the rename: after a power cut the name never points
        // at a file whose data did not reach the disk.
        let synced = file.sync_data().await;
        let _ = file.close().await;
        match synced.and_then(|()| filler.commit()) {
            Ok(evicted) => Outcome::Kept { evicted },
            Err(e) => {
                tracing::warn!(digest = %self.digest, error = %e, "cache: cannot commit a fill");
                Outcome::Disk(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_checked_against_the_digest_in_its_algorithm() {
        // sha256("hello world") and sha512("")
        let hello = BlobDigest::parse(
            "sha256:b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9",
        )
        .expect("digest");
        let mut h = Hasher::new(&hello);
        h.0.update(b"hello ");
        h.0.update(b"world");
        assert!(h.matches(&hello));
        let mut h = Hasher::new(&hello);
        h.0.update(b"hello world!");
        assert!(!h.matches(&hello));
        let empty512 = BlobDigest::parse(concat!(
            "sha512:cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce",
            "47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e"
        ))
        .expect("digest");
        assert!(Hasher::new(&empty512).matches(&empty512));
    }
}
