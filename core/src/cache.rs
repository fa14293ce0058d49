//! The edge blob cache's decisions, without I/O: which requests may be
//! answered from disk ([`cacheable`]), the digests that name cached files
//! ([`digest`]), the file header ([`entry`]), the least-recently-used
//! index that bounds the disk ([`index`]), `Range` answers ([`range`]),
//! and how recently the registry confirmed that a repository holds a
//! digest ([`confirm`]). The proxy crate's `cache` module does the disk
//! and network work and calls in.

pub mod cacheable;
pub mod confirm;
pub mod digest;
pub mod entry;
pub mod index;
pub mod range;

pub use cacheable::{cacheable, Cacheable};
pub use confirm::{Confirmations, Confirmed};
pub use digest::{Algorithm, BlobDigest};
pub use entry::{EntryError, EntryMeta, Kind, HEADER_LEN};
pub use index::Index;
pub use range::RangeAnswer;
