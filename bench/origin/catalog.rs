//! What the fake origin knows: the images it makes up, the blobs they name,
//! and the digests of uploads it accepted (and threw away).
//!
//! Any tag of the form `<layers>x<size>` (`1x1048576`, `3x16MiB`) names an
//! image of that shape; any other tag names the default shape. Layer `i` of
//! a shape is the origin's pattern for `seed_of([shape, i])` repeated to the
//! layer's size, the same in every repository, so its digest is computed once
//! (at the first request for the shape) and every later GET is a plain write
//! of a shared buffer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;

use crate::content::{digest_of, pattern, pattern_digest, seed_of};
use crate::registry::{config_json, manifest_digest_and_body, Descriptor, CONFIG_TYPE, LAYER_TYPE};
use crate::units::parse_size;

/// Layers an image shape may have.
pub const MAX_LAYERS: u32 = 16;
/// Largest layer a shape may ask for.
pub const MAX_LAYER_BYTES: u64 = 64 << 30;
/// Shapes kept before the cache starts over (each costs 1 MiB per layer).
const MAX_SHAPES: usize = 32;
/// Accepted-upload digests remembered for HEAD before starting over.
const MAX_UPLOADED: usize = 100_000;
/// Mixed into every origin seed, so origin blobs never equal pushed ones.
const ORIGIN_SEED: u64 = 0x6f72_6967_696e;

/// An image's layer count and layer size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shape {
    pub layers: u32,
    pub size: u64,
}

impl Shape {
    /// `3x16MiB` → 3 layers of 16 MiB; `None` for any other tag.
    pub fn from_tag(tag: &str) -> Option<Shape> {
        let (n, size) = tag.split_once('x')?;
        let layers: u32 = n.parse().ok()?;
        let size = parse_size(size).ok()?;
        ((1..=MAX_LAYERS).contains(&layers) && size <= MAX_LAYER_BYTES)
            .then_some(Shape { layers, size })
    }
}

/// A blob the origin can answer for.
#[derive(Debug, Clone)]
pub enum Blob {
    /// `size` bytes of `pattern` repeated.
    Pattern { pattern: Bytes, size: u64 },
    /// Small content held whole (image configs).
    Bytes(Bytes),
    /// An upload accepted and discarded: HEAD can answer, GET cannot.
    Uploaded { size: u64 },
}

/// A generated manifest.
#[derive(Debug)]
pub struct Manifest {
    pub body: Bytes,
    pub digest: String,
}

/// Shared by all origin workers. Reads dominate; the locks are only written
/// when a new shape or an upload arrives.
#[derive(Debug)]
pub struct Catalog {
    default: Shape,
    shapes: RwLock<HashMap<Shape, Arc<Manifest>>>,
    manifests: RwLock<HashMap<String, Arc<Manifest>>>,
    blobs: RwLock<HashMap<String, Blob>>,
    uploaded: Mutex<HashMap<String, u64>>,
}

impl Catalog {
    pub fn new(default: Shape) -> Self {
        Self {
            default,
            shapes: RwLock::default(),
            manifests: RwLock::default(),
            blobs: RwLock::default(),
            uploaded: Mutex::default(),
        }
    }

    /// The manifest for a tag (made up on first use) or a known digest.
    pub fn manifest(&self, reference: &str) -> Option<Arc<Manifest>> {
        if reference.starts_with("sha256:") {
            return read(&self.manifests).get(reference).cloned();
        }
        let shape = Shape::from_tag(reference).unwrap_or(self.default);
        if let Some(m) = read(&self.shapes).get(&shape) {
            return Some(m.clone());
        }
        Some(self.generate(shape))
    }

    /// Builds a shape's blobs and manifest. Two workers may race to build
    /// the same shape; both get identical content, so either result is fine.
    fn generate(&self, shape: Shape) -> Arc<Manifest> {
        let mut layers = Vec::with_capacity(shape.layers as usize);
        let mut blobs = Vec::with_capacity(shape.layers as usize + 1);
        for i in 0..shape.layers {
            let p = pattern(seed_of(&[
                ORIGIN_SEED,
                u64::from(shape.layers),
                shape.size,
                u64::from(i),
            ]));
            let digest = pattern_digest(&p, shape.size);
            layers.push(Descriptor {
                media_type: LAYER_TYPE.to_owned(),
                digest: digest.clone(),
                size: shape.size,
            });
            blobs.push((
                digest,
                Blob::Pattern {
                    pattern: p,
                    size: shape.size,
                },
            ));
        }
        let tag = format!("{}x{}", shape.layers, shape.size);
        let config = Bytes::from(config_json(&layers, &tag));
        let config_desc = Descriptor {
            media_type: CONFIG_TYPE.to_owned(),
            digest: digest_of(&config),
            size: config.len() as u64,
        };
        blobs.push((config_desc.digest.clone(), Blob::Bytes(config)));
        let (digest, body) = manifest_digest_and_body(&config_desc, &layers);
        let manifest = Arc::new(Manifest {
            body: Bytes::from(body),
            digest,
        });

        let mut shapes = write(&self.shapes);
        if shapes.len() >= MAX_SHAPES {
            // Start over rather than grow without bound; blobs of dropped
            // shapes are rebuilt by their next manifest request.
            shapes.clear();
            write(&self.manifests).clear();
            write(&self.blobs).clear();
        }
        shapes.insert(shape, manifest.clone());
        write(&self.manifests).insert(manifest.digest.clone(), manifest.clone());
        write(&self.blobs).extend(blobs);
        manifest
    }

    /// A generated blob, or the size of an accepted upload.
    pub fn blob(&self, digest: &str) -> Option<Blob> {
        if let Some(b) = read(&self.blobs).get(digest) {
            return Some(b.clone());
        }
        let uploaded = self.uploaded.lock().unwrap_or_else(|e| e.into_inner());
        uploaded.get(digest).map(|&size| Blob::Uploaded { size })
    }

    /// Remembers a finished upload so HEAD checks after a push succeed.
    pub fn uploaded(&self, digest: &str, size: u64) {
        let mut uploaded = self.uploaded.lock().unwrap_or_else(|e| e.into_inner());
        if uploaded.len() >= MAX_UPLOADED {
            uploaded.clear();
        }
        uploaded.insert(digest.to_owned(), size);
    }
}

/// A poisoned lock only means another worker panicked mid-insert; the maps
/// stay usable.
fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn shapes_from_tags() {
        assert_eq!(
            Shape::from_tag("1x1048576"),
            Some(Shape {
                layers: 1,
                size: 1 << 20
            })
        );
        assert_eq!(
            Shape::from_tag("3x16MiB"),
            Some(Shape {
                layers: 3,
                size: 16 << 20
            })
        );
        for other in ["latest", "0x5", "17x5", "x5", "2x", "2xfoo", "1x65GiB"] {
            assert_eq!(Shape::from_tag(other), None, "{other}");
        }
    }

    #[test]
    fn manifests_name_servable_blobs() {
        let c = Catalog::new(Shape {
            layers: 2,
            size: 1000,
        });
        let m = c.manifest("latest").unwrap();
        let parsed: serde_json::Value = serde_json::from_slice(&m.body).unwrap();
        assert_eq!(digest_of(&m.body), m.digest);
        assert_eq!(parsed["layers"].as_array().unwrap().len(), 2);
        for layer in parsed["layers"].as_array().unwrap() {
            let digest = layer["digest"].as_str().unwrap();
            let Some(Blob::Pattern { pattern, size }) = c.blob(digest) else {
                panic!("no pattern blob for {digest}");
            };
            assert_eq!(size, 1000);
            assert_eq!(digest_of(&pattern[..1000]), digest);
        }
        let config = parsed["config"]["digest"].as_str().unwrap();
        let Some(Blob::Bytes(b)) = c.blob(config) else {
            panic!("no config");
        };
        assert_eq!(digest_of(&b), config);
        // Same shape, same manifest; by digest too.
        assert_eq!(c.manifest("2x1000").unwrap().digest, m.digest);
        assert_eq!(c.manifest(&m.digest).unwrap().digest, m.digest);
        assert!(c.manifest(&digest_of(b"nope")).is_none());
        assert_ne!(c.manifest("1x1000").unwrap().digest, m.digest);
    }

    #[test]
    fn uploads_answer_head() {
        let c = Catalog::new(Shape { layers: 1, size: 1 });
        let d = digest_of(b"up");
        assert!(c.blob(&d).is_none());
        c.uploaded(&d, 2);
        assert!(matches!(c.blob(&d), Some(Blob::Uploaded { size: 2 })));
    }
}
