//! Images on disk in skopeo's `dir:` layout, `skopeo copy`, and digests.
//!
//! Layout (skopeo 1.9, "Directory Transport Version: 1.1"): `version`,
//! `manifest.json`, and one file per blob named by its hex digest without
//! the `sha256:` prefix.
//!
//! skopeo compresses uncompressed layers on push unless
//! `--preserve-digests` is given, and skips blobs the registry already has
//! (so use a fresh repository name, and fresh layers, per push).

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";

const BLOCK: usize = 1 << 20;
/// Default limit for one `skopeo copy`.
pub const COPY_TIMEOUT: Duration = Duration::from_secs(600);

/// Incremental SHA-256 backed by ring (through rustls's ring provider, so
/// it is optimised even in debug builds and uses SHA-NI where present).
pub struct Sha256(Box<dyn rustls::crypto::hash::Context>);

impl Sha256 {
    pub fn new() -> Self {
        let suite = rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256
            .tls13()
            .expect("a TLS 1.3 suite");
        Sha256(suite.common.hash_provider.start())
    }

    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// Lower-case hex, no prefix.
    pub fn finish_hex(self) -> String {
        hex(self.0.finish().as_ref())
    }
}

impl Default for Sha256 {
    fn default() -> Self {
        Self::new()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(data);
    format!("sha256:{}", h.finish_hex())
}

/// `sha256:<hex>` of a file's content, read in 1 MiB blocks.
pub fn sha256_file(path: &Path) -> String {
    let mut file = File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut h = Sha256::new();
    let mut buf = vec![0u8; BLOCK];
    loop {
        let n = file.read(&mut buf).expect("read file to hash");
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    format!("sha256:{}", h.finish_hex())
}

/// wyrand: a small 64-bit PRNG (seeds, sizes, choices). Layer bytes come
/// from [`RandomStream`] instead: wyrand runs at ~200 MB/s in an
/// unoptimised test build, blake3's XOF at ~5 GB/s in any build.
pub struct WyRand(u64);

impl WyRand {
    pub fn new(seed: u64) -> Self {
        WyRand(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0xa076_1d64_78bd_642f);
        let t = u128::from(self.0).wrapping_mul(u128::from(self.0 ^ 0xe703_7ed1_a0b4_28db));
        ((t >> 64) as u64) ^ (t as u64)
    }

    /// Fills `buf` (any length) with pseudo-random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for chunk in &mut chunks {
            chunk.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        let last = self.next_u64().to_le_bytes();
        rest.copy_from_slice(&last[..rest.len()]);
    }
}

/// Incompressible pseudo-random bytes from a seed: the blake3 XOF (blake3 is
/// a dependency of the crate, so it is optimised even in debug builds).
pub struct RandomStream(blake3::OutputReader);

impl RandomStream {
    pub fn new(seed: u64) -> Self {
        let mut h = blake3::Hasher::new();
        h.update(b"regproxy test data");
        h.update(&seed.to_le_bytes());
        RandomStream(h.finalize_xof())
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        self.0.fill(buf);
    }
}

/// A seed that differs on every call in every process, so that two images
/// never share a layer (skopeo skips blobs the registry already has).
pub fn fresh_seed() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut rng = WyRand::new(
        nanos ^ (u64::from(std::process::id()) << 32) ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15),
    );
    rng.next_u64()
}

/// One blob of an [`ImageDir`].
#[derive(Debug, Clone)]
pub struct Blob {
    /// `sha256:<hex>`.
    pub digest: String,
    pub size: u64,
    pub path: PathBuf,
}

/// An image in skopeo's `dir:` layout.
#[derive(Debug, Clone)]
pub struct ImageDir {
    pub path: PathBuf,
    /// `sha256:` digest of `manifest.json` as written.
    pub manifest_digest: String,
    pub config: Blob,
    pub layers: Vec<Blob>,
}

impl ImageDir {
    /// `dir:/path` for skopeo.
    pub fn reference(&self) -> String {
        format!("dir:{}", self.path.display())
    }

    pub fn layer_digests(&self) -> Vec<String> {
        self.layers.iter().map(|l| l.digest.clone()).collect()
    }

    /// Blobs the registry stores for this image: layers, config, and the
    /// manifest (distribution keeps manifests in its blob store too).
    pub fn registry_blob_count(&self) -> usize {
        self.layers.len() + 2
    }

    pub fn total_layer_bytes(&self) -> u64 {
        self.layers.iter().map(|l| l.size).sum()
    }
}

/// Writes an OCI image with one uncompressed random layer per size into
/// `dir` (created), content from [`fresh_seed`].
pub fn make_image_dir(dir: &Path, layer_sizes: &[u64]) -> ImageDir {
    make_image_dir_seeded(dir, layer_sizes, fresh_seed())
}

/// [`make_image_dir`] with a fixed seed (same seed and sizes, same image).
pub fn make_image_dir_seeded(dir: &Path, layer_sizes: &[u64], seed: u64) -> ImageDir {
    std::fs::create_dir_all(dir).expect("create image dir");
    std::fs::write(dir.join("version"), "Directory Transport Version: 1.1\n")
        .expect("write version");
    let mut rng = RandomStream::new(seed);
    let mut layers = Vec::with_capacity(layer_sizes.len());
    let mut buf = vec![0u8; BLOCK];
    for (i, &size) in layer_sizes.iter().enumerate() {
        let tmp = dir.join(format!(".layer-{i}.tmp"));
        let mut file = File::create(&tmp).expect("create layer file");
        let mut hash = Sha256::new();
        let mut left = size;
        while left > 0 {
            let n = left.min(BLOCK as u64) as usize;
            rng.fill(&mut buf[..n]);
            hash.update(&buf[..n]);
            file.write_all(&buf[..n]).expect("write layer");
            left -= n as u64;
        }
        drop(file);
        let hex = hash.finish_hex();
        let path = dir.join(&hex);
        std::fs::rename(&tmp, &path).expect("rename layer");
        layers.push(Blob {
            digest: format!("sha256:{hex}"),
            size,
            path,
        });
    }
    write_config_and_manifest(dir, layers, &format!("seed {seed}"))
}

/// An OCI archive (`oci-archive:ARCHIVE:v1`) of an image whose one layer
/// is an uncompressed tar of `ctx/blob`, made by tar and skopeo: what ctr
/// imports without unpacking. `work` (created) holds the tar and the image
/// folder. Returns the archive and the layer's digest.
pub fn oci_archive_of_blob(ctx: &Path, work: &Path) -> (PathBuf, String) {
    std::fs::create_dir_all(work).expect("create work dir");
    let layer_tar = work.join("layer.tar");
    crate::support::cmd::run(
        Command::new("tar")
            .arg("-C")
            .arg(ctx)
            .arg("-cf")
            .arg(&layer_tar)
            .arg("blob"),
        Duration::from_secs(120),
    )
    .assert_success();
    let image = image_dir_from_layer_files(&work.join("image"), &[layer_tar]);
    let archive = work.join("image.tar");
    skopeo_copy(
        &image.reference(),
        &format!("oci-archive:{}:v1", archive.display()),
        &CopyOpts {
            preserve_digests: true,
            ..CopyOpts::default()
        },
    )
    .assert_success();
    (archive, image.layers[0].digest.clone())
}

/// Writes an OCI image into `dir` (created) whose layers are copies of the
/// given files (uncompressed tars, e.g. made with `tar -cf`).
pub fn image_dir_from_layer_files(dir: &Path, files: &[PathBuf]) -> ImageDir {
    std::fs::create_dir_all(dir).expect("create image dir");
    std::fs::write(dir.join("version"), "Directory Transport Version: 1.1\n")
        .expect("write version");
    let layers = files
        .iter()
        .map(|f| {
            let digest = sha256_file(f);
            let path = dir.join(digest.trim_start_matches("sha256:"));
            let size = std::fs::copy(f, &path).expect("copy layer file");
            Blob { digest, size, path }
        })
        .collect();
    write_config_and_manifest(dir, layers, &format!("{}", fresh_seed()))
}

/// Config and `manifest.json` for `layers` (already in `dir`); `note` goes
/// into the config's history so that two images never share a config.
fn write_config_and_manifest(dir: &Path, layers: Vec<Blob>, note: &str) -> ImageDir {
    let diff_ids: Vec<String> = layers.iter().map(|l| format!("\"{}\"", l.digest)).collect();
    let config_json = format!(
        concat!(
            "{{\"architecture\":\"amd64\",\"os\":\"linux\",",
            "\"config\":{{\"Env\":[\"PATH=/usr/bin:/bin\"],\"Cmd\":[\"/bin/sh\"]}},",
            "\"rootfs\":{{\"type\":\"layers\",\"diff_ids\":[{}]}},",
            "\"history\":[{{\"created_by\":\"regproxy test harness {}\"}}]}}"
        ),
        diff_ids.join(","),
        note
    );
    let config = write_blob(dir, config_json.as_bytes());

    let layer_descs: Vec<String> = layers
        .iter()
        .map(|l| {
            format!(
                "{{\"mediaType\":\"{LAYER_MEDIA_TYPE}\",\"digest\":\"{}\",\"size\":{}}}",
                l.digest, l.size
            )
        })
        .collect();
    let manifest = format!(
        concat!(
            "{{\"schemaVersion\":2,\"mediaType\":\"{}\",",
            "\"config\":{{\"mediaType\":\"{}\",\"digest\":\"{}\",\"size\":{}}},",
            "\"layers\":[{}]}}"
        ),
        MANIFEST_MEDIA_TYPE,
        CONFIG_MEDIA_TYPE,
        config.digest,
        config.size,
        layer_descs.join(",")
    );
    std::fs::write(dir.join("manifest.json"), &manifest).expect("write manifest.json");
    ImageDir {
        path: dir.to_owned(),
        manifest_digest: sha256_digest(manifest.as_bytes()),
        config,
        layers,
    }
}

fn write_blob(dir: &Path, data: &[u8]) -> Blob {
    let digest = sha256_digest(data);
    let path = dir.join(digest.trim_start_matches("sha256:"));
    std::fs::write(&path, data).expect("write blob");
    Blob {
        digest,
        size: data.len() as u64,
        path,
    }
}

/// Options for [`skopeo_copy`]; `Default` is anonymous with TLS verified
/// against the system roots.
#[derive(Debug, Clone, Default)]
pub struct CopyOpts {
    pub src_creds: Option<(String, String)>,
    pub dest_creds: Option<(String, String)>,
    /// Directory holding only `ca.crt` (see `Tls::cert_dir_for_skopeo`).
    pub src_cert_dir: Option<PathBuf>,
    pub dest_cert_dir: Option<PathBuf>,
    /// `Some(false)` only for plain-HTTP access straight to the registry.
    pub src_tls_verify: Option<bool>,
    pub dest_tls_verify: Option<bool>,
    /// Keep layers uncompressed (and digests as they are) on push.
    pub preserve_digests: bool,
    pub extra_args: Vec<String>,
    /// `None`: [`COPY_TIMEOUT`]; skopeo is killed after it.
    pub timeout: Option<Duration>,
}

impl CopyOpts {
    /// Push through the TLS proxy as `user`, CA from `cert_dir`, digests kept.
    pub fn push(cert_dir: &Path, user: &str, pass: &str) -> Self {
        CopyOpts {
            dest_creds: Some((user.to_owned(), pass.to_owned())),
            dest_cert_dir: Some(cert_dir.to_owned()),
            preserve_digests: true,
            ..Self::default()
        }
    }

    /// Pull through the TLS proxy as `user`, CA from `cert_dir`.
    pub fn pull(cert_dir: &Path, user: &str, pass: &str) -> Self {
        CopyOpts {
            src_creds: Some((user.to_owned(), pass.to_owned())),
            src_cert_dir: Some(cert_dir.to_owned()),
            ..Self::default()
        }
    }

    /// Push straight to the plain-HTTP registry (no creds, no TLS).
    pub fn push_plain() -> Self {
        CopyOpts {
            dest_tls_verify: Some(false),
            preserve_digests: true,
            ..Self::default()
        }
    }

    /// Pull straight from the plain-HTTP registry.
    pub fn pull_plain() -> Self {
        CopyOpts {
            src_tls_verify: Some(false),
            ..Self::default()
        }
    }
}

/// What one `skopeo copy` did.
#[derive(Debug)]
pub struct CopyResult {
    /// `None` when it was killed at the timeout.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
    pub args: Vec<String>,
}

impl CopyResult {
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// Panics with the command and skopeo's output unless it succeeded.
    pub fn assert_success(&self) -> &Self {
        assert!(
            self.success(),
            "skopeo {:?} failed ({:?}) after {:?}\n--- stderr ---\n{}\n--- stdout ---\n{}",
            self.args,
            self.status,
            self.elapsed,
            self.stderr,
            self.stdout
        );
        self
    }

    /// Panics unless it failed; returns stderr for assertions.
    pub fn assert_failure(&self) -> &str {
        assert!(
            !self.success(),
            "skopeo {:?} unexpectedly succeeded\n{}",
            self.args,
            self.stdout
        );
        &self.stderr
    }
}

/// `docker://HOST:PORT/repo:tag` for an address (IP literal; the test
/// certificate covers `127.0.0.1`).
pub fn docker_ref(addr: std::net::SocketAddr, repo: &str, tag: &str) -> String {
    format!("docker://{addr}/{repo}:{tag}")
}

/// Runs `skopeo --insecure-policy copy [opts] SRC DST` (policy checks are
/// not what is tested). Output goes to temp files, so large outputs cannot
/// block it; it is killed by PID after the timeout.
pub fn skopeo_copy(src: &str, dst: &str, opts: &CopyOpts) -> CopyResult {
    let mut args: Vec<String> = vec!["--insecure-policy".into(), "copy".into()];
    let creds = |flag: &str,
                 c: &Option<(String, String)>,
                 reference: &str,
                 no_creds: &str,
                 args: &mut Vec<String>| {
        match c {
            Some((u, p)) => {
                args.push(flag.into());
                args.push(format!("{u}:{p}"));
            }
            // Never pick up credentials from the developer's auth files.
            None if reference.starts_with("docker://") => args.push(no_creds.into()),
            None => {}
        }
    };
    creds(
        "--src-creds",
        &opts.src_creds,
        src,
        "--src-no-creds",
        &mut args,
    );
    creds(
        "--dest-creds",
        &opts.dest_creds,
        dst,
        "--dest-no-creds",
        &mut args,
    );
    if let Some(d) = &opts.src_cert_dir {
        args.push("--src-cert-dir".into());
        args.push(d.display().to_string());
    }
    if let Some(d) = &opts.dest_cert_dir {
        args.push("--dest-cert-dir".into());
        args.push(d.display().to_string());
    }
    if let Some(v) = opts.src_tls_verify {
        args.push(format!("--src-tls-verify={v}"));
    }
    if let Some(v) = opts.dest_tls_verify {
        args.push(format!("--dest-tls-verify={v}"));
    }
    if opts.preserve_digests {
        args.push("--preserve-digests".into());
    }
    args.extend(opts.extra_args.iter().cloned());
    args.push(src.into());
    args.push(dst.into());

    let out_dir = tempfile::tempdir().expect("temp dir for skopeo output");
    let stdout_path = out_dir.path().join("stdout");
    let stderr_path = out_dir.path().join("stderr");
    let start = Instant::now();
    let mut child = Command::new("skopeo")
        .args(&args)
        .stdin(Stdio::null())
        .stdout(File::create(&stdout_path).expect("create skopeo stdout"))
        .stderr(File::create(&stderr_path).expect("create skopeo stderr"))
        .spawn()
        .expect("spawn skopeo (apt-get install skopeo)");
    let timeout = opts.timeout.unwrap_or(COPY_TIMEOUT);
    let status = super::wait_for(timeout, || child.try_wait().ok().flatten());
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    CopyResult {
        status,
        stdout: std::fs::read_to_string(&stdout_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&stderr_path).unwrap_or_default(),
        elapsed: start.elapsed(),
        args,
    }
}

/// The `layers[].digest` values of `dir/manifest.json` (an image pulled
/// with `skopeo copy docker://... dir:DIR`), in order.
pub fn pulled_layer_digests(dir: &Path) -> Vec<String> {
    let manifest = std::fs::read_to_string(dir.join("manifest.json"))
        .unwrap_or_else(|e| panic!("read {}/manifest.json: {e}", dir.display()));
    layer_digests_of_manifest(&manifest)
}

/// `layers[].digest` of a manifest's JSON text, in order (a small scanner,
/// enough for image manifests).
pub fn layer_digests_of_manifest(manifest: &str) -> Vec<String> {
    let Some(start) = manifest.find("\"layers\"") else {
        return Vec::new();
    };
    let rest = &manifest[start..];
    let Some(open) = rest.find('[') else {
        return Vec::new();
    };
    // Find the matching ']' outside strings.
    let bytes = rest.as_bytes();
    let (mut depth, mut in_str, mut esc, mut end) = (0i32, false, false, rest.len());
    for (i, &b) in bytes.iter().enumerate().skip(open) {
        if in_str {
            match b {
                _ if esc => esc = false,
                b'\\' => esc = true,
                b'"' => in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'[' => depth += 1,
            b']' => {
                depth -= 1;
                if depth == 0 {
                    end = i;
                    break;
                }
            }
            _ => {}
        }
    }
    let mut layers = &rest[open..end];
    let mut out = Vec::new();
    while let Some(pos) = layers.find("\"digest\"") {
        layers = &layers[pos + "\"digest\"".len()..];
        let Some(q1) = layers.find('"') else { break };
        let after = &layers[q1 + 1..];
        let Some(q2) = after.find('"') else { break };
        out.push(after[..q2].to_owned());
        layers = &after[q2 + 1..];
    }
    out
}

/// Checks that every blob file in a `dir:` image hashes to its name and that
/// every blob `manifest.json` names is present; `Err` describes the first problem.
pub fn verify_dir_blobs(dir: &Path) -> Result<(), String> {
    let manifest = std::fs::read_to_string(dir.join("manifest.json"))
        .map_err(|e| format!("manifest.json: {e}"))?;
    for digest in layer_digests_of_manifest(&manifest) {
        let hex = digest.trim_start_matches("sha256:");
        if !dir.join(hex).is_file() {
            return Err(format!("blob {digest} named in manifest.json is missing"));
        }
    }
    for entry in std::fs::read_dir(dir).map_err(|e| e.to_string())? {
        let entry = entry.map_err(|e| e.to_string())?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
            let actual = sha256_file(&entry.path());
            if actual != format!("sha256:{name}") {
                return Err(format!("blob {name} hashes to {actual}"));
            }
        }
    }
    Ok(())
}
